"""The student protocol: what sampling and training need from a DD student (method.md §4).

A student maps a DD state `X_t` (data vectors before step t, the original noise after) to a
prediction of every position at once, through two heads: the teacher's logits head and a
continuous head in codebook space. Both families implement `Student`; the DD procedure in
`ardistill.student.procedure` is written against it only.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor

from ardistill.teachers.base import Condition, TokenLayout


class StudentOutput(NamedTuple):
    """conti: (B, N, d) float continuous-head latents; logits: (B, N, V) float32, or
    (B, hi - lo, V) for positions lo..hi-1 when the student was called with `logits_range`.
    Row i is the prediction for position i (no shift)."""

    conti: Tensor
    logits: Tensor


@runtime_checkable
class Student(Protocol):
    family: str  # "llamagen" | "var"
    layout: TokenLayout
    vocab_size: int
    codebook_dim: int

    def __call__(
        self,
        x: Tensor,
        cond: Condition,
        t: Tensor,
        logits_range: tuple[int, int] | None = None,
    ) -> StudentOutput:
        """x: (B, N, d) float (data vectors at positions < layout.begin(t), noise after);
        t: (B,) int64 DD timestep in AR steps (tokens for LlamaGen, scales for VAR).
        logits_range: (lo, hi) computes the logits head only for positions lo..hi-1, so that
        `logits` is (B, hi - lo, V) (speed: the caller uses no other logits); None: all N."""
        ...
