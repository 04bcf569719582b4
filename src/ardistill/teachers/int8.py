"""int8 inference of the linear layers of a student or a teacher on the CPU (`ardistill sample
--int8`, `ardistill bench student --int8`, `ardistill bench teacher --int8`).

Why: on CPUs without AMX or avx512_bf16 (the AVX2 EPYC of these sessions) bf16 is emulated and
fp32 is the fastest float dtype. A LlamaGen-B 1-step student spends 84% of its time in linear
layers that already run near the fp32 peak (docs/student-llamagen.md, "int8"): int8 multiplies
twice as many values per AVX2 instruction. A teacher's decode step at batch 1 multiplies 2 rows
(CFG) by every weight and is bound by reading the weights from memory (about 12 GB/s on one
core here): int8 reads a quarter of the bytes (docs/teachers.md, "int8").

Each linear layer (`FastLinear`: the transformer blocks, the logits head, a student's
continuous-head projection) keeps its float32 parameters (state dict unchanged) and gets an int8
copy of its weight, quantized symmetrically per output channel; its input is quantized per call
(per tensor) and the product accumulated in int32 (`teachers.fast_linear.set_cpu_int8`).
Lossy: never used by pair generation (the flow map needs the teacher's exact probabilities);
the measured fidelity is in the docs above.
"""

from __future__ import annotations

import torch
from torch import nn

from ardistill.errors import UserError
from ardistill.teachers.fast_linear import set_cpu_int8

FAMILIES = ("llamagen", "var")


def _enable(net: nn.Module, what: str, compiled: bool) -> None:
    p = next(net.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32:
        raise UserError(f"--int8 needs a float32 {what} on the CPU (got {p.dtype} on "
                        f"{p.device}): pass --dtype fp32 --device cpu")
    if compiled:
        raise UserError("--int8 and --compile do not combine (compiled graphs pick their own "
                        "kernels)")
    if not set_cpu_int8(net, True):
        raise UserError("--int8: this torch build has no quantized linear ops "
                        "(torch.ops.quantized.linear_dynamic with the x86/fbgemm engine)")


def use_int8(student, *, compiled: bool = False) -> None:
    """Switch `student`'s linear layers to int8 CPU inference (LlamaGen and VAR students);
    UserError naming the problem where it cannot apply (another family, not a float32 CPU
    student, a compiled student, a torch build without the quantized ops)."""
    family = getattr(student, "family", None)
    if family not in FAMILIES:
        raise UserError(f"--int8 is implemented for LlamaGen and VAR students, not {family!r}")
    _enable(student, "student",
            compiled or getattr(student, "_compiled", None) is not None)


def teacher_network(teacher) -> nn.Module:
    """The transformer of a LlamaGen or VAR teacher (the module holding its linear layers)."""
    family = getattr(teacher, "family", None)
    net = {"llamagen": getattr(teacher, "gpt", None),
           "var": getattr(teacher, "model", None)}.get(family)
    if not isinstance(net, nn.Module):
        raise UserError(f"--int8 is implemented for LlamaGen and VAR teachers, not {family!r}")
    return net


def use_int8_teacher(teacher, *, compiled: bool = False) -> None:
    """Switch a teacher's transformer to int8 linear layers for sampling (not for pair
    generation); UserError as `use_int8`."""
    net = teacher_network(teacher)
    compiled = (compiled or getattr(teacher, "_compiled", None) is not None
                or getattr(teacher, "_run_blocks", None) is not None)
    _enable(net, "teacher", compiled)


def stop_int8(model) -> None:
    """Back to the float path (a student, or a teacher's transformer)."""
    net = model if isinstance(model, nn.Module) else teacher_network(model)
    set_cpu_int8(net, False)
