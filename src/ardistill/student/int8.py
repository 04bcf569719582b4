"""int8 inference of a DD student's linear layers on the CPU (`ardistill sample --int8`,
`ardistill bench student --int8`).

Why: on CPUs without AMX or avx512_bf16 (the AVX2 EPYC of these sessions) bf16 is emulated and
fp32 is the fastest float dtype, and a LlamaGen-B 1-step student spends 84% of its time in
linear layers that already run near the fp32 peak (docs/student-llamagen.md, "int8"). int8
multiplies twice as many values per instruction. Each linear layer keeps its float32
parameters (state dict unchanged) and gets an int8 copy of its weight, quantized symmetrically
per output channel; its input is quantized per call (per tensor) and the product accumulated in
int32 (`teachers.fast_linear.set_cpu_int8`). Lossy: the measured fidelity is in the doc.
"""

from __future__ import annotations

import torch

from ardistill.errors import UserError
from ardistill.teachers.fast_linear import set_cpu_int8


def use_int8(student, *, compiled: bool = False) -> None:
    """Switch `student`'s linear layers to int8 CPU inference (LlamaGen and VAR students);
    UserError naming the problem where it cannot apply (another family, not a float32 CPU
    student, a compiled student, a torch build without the quantized ops)."""
    family = getattr(student, "family", None)
    if family not in ("llamagen", "var"):
        raise UserError(f"--int8 is implemented for LlamaGen and VAR students, not {family!r}")
    p = next(student.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32:
        raise UserError(f"--int8 needs a float32 student on the CPU (got {p.dtype} on "
                        f"{p.device}): pass --dtype fp32 --device cpu")
    if compiled or getattr(student, "_compiled", None) is not None:
        raise UserError("--int8 and --compile do not combine (compiled graphs pick their own "
                        "kernels)")
    if not set_cpu_int8(student, True):
        raise UserError("--int8: this torch build has no quantized linear ops "
                        "(torch.ops.quantized.linear_dynamic with the x86/fbgemm engine)")
