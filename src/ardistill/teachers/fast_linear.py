"""`nn.Linear` with an optional oneDNN-packed CPU inference path (and an optional int8 one).

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

import warnings

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


def _int8_supported() -> bool:
    ops = getattr(torch.ops, "quantized", None)
    return bool(ops is not None and hasattr(ops, "linear_prepack")
                and hasattr(ops, "linear_dynamic")
                and torch.backends.quantized.engine in ("x86", "fbgemm", "onednn"))


def int8_weight(w: Tensor) -> Tensor:
    """The symmetric per-output-channel int8 copy of a float weight (out, in): scale =
    max |w_row| / 127 (zero point 0), as torch's dynamic quantization makes it."""
    w = w.detach().float()
    scale = (w.abs().amax(1) / 127.0).clamp(min=1e-12).double()
    zero = torch.zeros(w.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # torch >= 2.10 marks quantized tensors deprecated
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated")
        return torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)


class FastLinear(nn.Linear):
    """A drop-in `nn.Linear` (same parameters and keys) with the packed CPU path, and an
    optional int8 CPU inference path (`set_cpu_int8`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cpu_packing = False
        self.cpu_int8 = False
        self._packed: tuple[tuple, Tensor] | None = None
        self._int8: tuple[tuple, object] | None = None

    def __getstate__(self) -> dict:
        # the packed copy is an opaque oneDNN tensor (not copyable, not picklable): a copy or a
        # pickle of the module rebuilds it lazily
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(
            self.__dict__)
        state = dict(state)
        state["_packed"] = None
        state["_int8"] = None
        return state

    def _use_packed(self, x: Tensor) -> bool:
        return (
            (self.cpu_packing or self.cpu_int8)
            and not self.training
            and not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not _compiling()  # under torch.compile inductor picks its own kernels
        )

    def _derived(self, slot: str, make):
        """A copy derived from the parameters, kept in `slot` ("_packed", "_int8") and made
        again whenever the weight or the bias changes (new tensor or in-place update)."""
        key = (weight_key(self.weight), None if self.bias is None else weight_key(self.bias))
        kept = self.__dict__[slot]
        if kept is None or kept[0] != key:
            kept = self.__dict__[slot] = (key, make())
        return kept[1]

    def _packed_weight(self) -> Tensor:
        return self._derived("_packed", lambda: torch.ops.mkldnn._reorder_linear_weight(
            self.weight.detach(), None))

    def _int8_packed(self):
        bias = None if self.bias is None else self.bias.detach().float()
        return self._derived("_int8", lambda: torch.ops.quantized.linear_prepack(
            int8_weight(self.weight), bias))

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """x @ W^T + b; `bias` given: it replaces the module's own (VAR's qkv product takes a
        bias assembled per call from separate q and v biases)."""
        b = self.bias if bias is None else bias
        if self._use_packed(x):
            if self.cpu_int8:
                # activations quantized per call (per tensor, 7-bit range: fbgemm's
                # overflow-safe setting on CPUs without VNNI, as torch's dynamic Linear)
                y = torch.ops.quantized.linear_dynamic(x, self._int8_packed(), True)
                return y if bias is None else y + bias
            return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), b, "none", [],
                                                      "")
        return F.linear(x, self.weight, b)


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


def set_cpu_int8(module: nn.Module, enabled: bool) -> bool:
    """Run every FastLinear inside `module` in int8 for float32 CPU inference (eval, no
    gradient): weights quantized per output channel once (redone when the weight or bias
    changes), activations per call, int32 accumulation (fbgemm / oneDNN through
    `torch.ops.quantized.linear_dynamic`). Lossy: docs/student-llamagen.md ("int8") has its
    measured fidelity.
    Returns whether it is enabled (False where this torch build lacks the quantized ops)."""
    enabled = enabled and _int8_supported()
    for m in module.modules():
        if isinstance(m, FastLinear):
            m.cpu_int8 = enabled
            if not enabled:
                m._int8 = None
    return enabled
