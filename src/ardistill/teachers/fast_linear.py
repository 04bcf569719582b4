"""`nn.Linear` with an optional oneDNN-packed CPU inference path.

Why: AR decoding multiplies every weight matrix by a handful of rows (batch x 2 for CFG). On
the CPUs we measured (AMD EPYC, torch 2.13 CPU wheel) MKL's sgemm is slow for 2-16 rows, about
2x slower than oneDNN with a pre-packed weight (docs/teachers.md has the numbers). The packed
copy is made lazily, only when packing was enabled on the module (`set_cpu_packing`), the input
is a float32 CPU tensor, autograd is off and the module is in eval mode. It is rebuilt whenever
the weight changes (new tensor or in-place update), so training and loading stay correct. The
state dict is unchanged: the packed copy is a plain attribute, never a parameter or buffer.
Cost: one extra copy of the packed weights in memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def weight_key(w: Tensor) -> tuple:
    """What identifies a weight's values for a derived copy (packed, transformed): the tensor,
    its memory and its version counter (inference tensors, made under torch.inference_mode,
    have none: their memory only)."""
    return (id(w), -1 if w.is_inference() else w._version, w.data_ptr())  # noqa: SLF001


def _packing_supported() -> bool:
    return bool(
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class FastLinear(nn.Linear):
    """A drop-in `nn.Linear` (same parameters and keys) with the packed CPU path."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cpu_packing = False
        self._packed: tuple[tuple, Tensor] | None = None

    def __getstate__(self) -> dict:
        # the packed copy is an opaque oneDNN tensor (not copyable, not picklable): a copy or a
        # pickle of the module rebuilds it lazily
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(
            self.__dict__)
        state = dict(state)
        state["_packed"] = None
        return state

    def _use_packed(self, x: Tensor) -> bool:
        return (
            self.cpu_packing
            and not self.training
            and not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not _compiling()  # under torch.compile inductor picks its own kernels
        )

    def _packed_weight(self) -> Tensor:
        w = self.weight
        key = weight_key(w)
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), None))
        return self._packed[1]

    def forward(self, x: Tensor) -> Tensor:
        if self._use_packed(x):
            return torch.ops.mkldnn._linear_pointwise(
                x, self._packed_weight(), self.bias, "none", [], ""
            )
        return F.linear(x, self.weight, self.bias)


def set_cpu_packing(module: nn.Module, enabled: bool) -> bool:
    """Enable or disable the packed CPU path on every FastLinear inside `module`.
    Returns whether it is enabled (False where this torch build lacks oneDNN)."""
    enabled = enabled and _packing_supported()
    for m in module.modules():
        if isinstance(m, FastLinear):
            m.cpu_packing = enabled
            if not enabled:
                m._packed = None
    return enabled
