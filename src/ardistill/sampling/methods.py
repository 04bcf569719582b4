"""The samplers, as plain functions on tensors: one call per batch (method.md §2, §6, §7).

Every sampler takes the batch's noise `(B, N, d)` (the DD noise of every position, which the
student starts from and the flow map consumes) and its `Condition`, and returns tokens
`(B, N)` int64 and, for DD samplers, the final latent sequence `(B, N, d)` (the continuous
head's positions are not snapped; tokens there are the nearest codewords, `nearest_codes`).

Randomness. A sampler never touches a global RNG: the "multinomial" choice draws from one
`torch.Generator` per sample, seeded from that sample's seed (`RowMultinomialChooser`), so a
sample is a pure function of (seed, index) whatever the batch around it (up to floating-point
differences of the networks between batch sizes). The "flow" choice maps each position's noise
through the flow map (the result is a deterministic function of the noise); "greedy" takes the
argmax.

Methods (names as `ardistill sample --method` takes them):
- teacher: the teacher's AR loop with the chosen choice (`sample_teacher`);
- dd: the DD few-step sampler, t_list (0,) or (0, t2, ...) and split (`sample_dd`);
- teacher-involved: "pre-trained-n-m" (`sample_teacher_involved`);
- onestep / skip: the paper's baselines (`ardistill.sampling.baselines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ardistill.pairs.flowmap import FlowChooser, build_noise_map
from ardistill.student.base import Student
from ardistill.student.procedure import few_step, nearest_codes, teacher_involved
from ardistill.teachers.base import (
    Chooser,
    Condition,
    SamplingConfig,
    Teacher,
    TokenLayout,
    decode,
    greedy_chooser,
)

CHOICES = ("multinomial", "flow", "greedy")


@dataclass
class RowMultinomialChooser:
    """Multinomial sampling with one generator per sample (row of the batch).

    seeds: (B,) int64 per-sample seeds. Row b of every step draws from its own generator, so
    its tokens do not depend on which samples share the batch."""

    seeds: Sequence[int]

    def __post_init__(self) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in self.seeds]

    def __call__(self, step: int, probs: Tensor) -> Tensor:
        """probs: (B, l, V) float32 -> (B, l) int64 (drawn on the CPU, put on probs' device)."""
        if probs.shape[0] != len(self.generators):
            raise ValueError(f"{probs.shape[0]} rows but {len(self.generators)} generators")
        p = probs.detach().float().cpu()
        out = torch.stack([torch.multinomial(p[b], 1, generator=g)[:, 0]
                           for b, g in enumerate(self.generators)])
        return out.to(probs.device)


def make_chooser(choice: str, *, noise: Tensor, layout: TokenLayout, codebook: Tensor,
                 row_seeds: Sequence[int] | None = None, flow_steps: int | None = None) -> Chooser:
    """A `teachers.base.Chooser` for `choice` in CHOICES.

    noise: (B, N, d) the batch's DD noise (used by "flow"); codebook: (V, d) float32
    `teacher.dd_codebook()`; row_seeds: (B,) per-sample seeds (needed by "multinomial");
    flow_steps: the flow solver's main-grid steps (None: its default)."""
    if choice == "greedy":
        return greedy_chooser
    if choice == "multinomial":
        if row_seeds is None:
            raise ValueError("the multinomial choice needs per-sample seeds (row_seeds)")
        return RowMultinomialChooser(list(row_seeds))
    if choice == "flow":
        return FlowChooser(build_noise_map(codebook.float(), flow_steps), noise, layout)
    raise ValueError(f"teacher choice must be one of {', '.join(CHOICES)}, got {choice!r}")


@torch.no_grad()
def sample_teacher(teacher: Teacher, cond: Condition, choose: Chooser,
                   sampling: SamplingConfig | None = None) -> Tensor:
    """The teacher's own AR sampling -> (B, N) int64 tokens. sampling: default the teacher's."""
    sampling = teacher.default_sampling if sampling is None else sampling
    return decode(teacher, cond, sampling, choose)


@dataclass
class DDSample:
    """latents: (B, N, d) final DD sequence (continuous head not snapped); tokens: (B, N)
    int64 its nearest codewords (what token metrics compare)."""

    latents: Tensor
    tokens: Tensor


@torch.no_grad()
def sample_dd(student: Student, noise: Tensor, cond: Condition, t_list: Sequence[int],
              split: int, codebook: Tensor) -> DDSample:
    """DD few-step sampling (method.md §6): noise (B, N, d) -> DDSample.

    t_list: (0,) one step, (0, t2) two steps, any increasing list from 0; split: AR steps
    whose positions take the logits head (the rest take the continuous head)."""
    x = few_step(student, noise, cond, [int(t) for t in t_list], int(split), codebook)
    return DDSample(x, nearest_codes(x, codebook))


@torch.no_grad()
def sample_teacher_involved(student: Student, teacher: Teacher, noise: Tensor, cond: Condition,
                            n: int, m: int, split: int, codebook: Tensor, choose: Chooser, *,
                            sampling: SamplingConfig | None = None,
                            official_prefix_quirk: bool = False) -> DDSample:
    """"pre-trained-n-m" (method.md §6): a DD step, the teacher regenerates steps n..m-1,
    a DD step at m. official_prefix_quirk: VAR only, run the teacher's prefix without the
    block-causal mask as the official `intermediate_sample` does (oracle compatibility)."""
    options = {"official_prefix_quirk": True} if official_prefix_quirk else {}
    if official_prefix_quirk and teacher.family != "var":
        raise ValueError("official_prefix_quirk applies to VAR teachers only")
    x = teacher_involved(student, teacher, noise, cond, (0, int(m)), int(n), int(split),
                         codebook, choose, sampling, **options)
    return DDSample(x, nearest_codes(x, codebook))
