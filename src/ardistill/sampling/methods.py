"""The samplers, as plain functions on tensors: one call per batch (method.md §2, §6, §7).

Every sampler takes the batch's noise `(B, N, d)` (the DD noise of every position, which the
student starts from and the flow map consumes) and its `Condition`, and returns tokens
`(B, N)` int64 and, for DD samplers, the final latent sequence `(B, N, d)` (the continuous
head's positions are not snapped; tokens there are the nearest codewords, `nearest_codes`).

Randomness. A sampler never touches a global RNG: it gets a chooser (`core.choosers`): the
"multinomial" choice draws from one `torch.Generator` per sample, seeded from that sample's
seed, so a sample is a pure function of (seed, index) whatever the batch around it (up to
floating-point differences of the networks between batch sizes); the "flow" choice maps each
position's noise through the flow map (a deterministic function of the noise); "greedy" takes
the argmax.

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

from ardistill.core.choosers import dd_flow_choice
from ardistill.student.base import Student
from ardistill.student.procedure import (
    TokenChoice,
    argmax_choice,
    few_step,
    nearest_codes,
    teacher_involved,
)
from ardistill.teachers.base import (
    Chooser,
    Condition,
    SamplingConfig,
    Teacher,
    decode,
)


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


DD_CHOICES = ("argmax", "flow")


def dd_token_choice(choice: str, codebook: Tensor, flow_steps: int | None = None,
                    temperature: float = 1.0) -> TokenChoice:
    """How a DD student's logits become tokens. "argmax": the official rule. "flow": the flow
    map (method.md §2) of each position's own input noise over the student's distribution
    `softmax(logits)`: still a deterministic function of the noise; where the student is
    certain it is the argmax, where it hesitates it keeps the alternatives in proportion
    instead of always taking the mode (and where the student's distribution equals the
    teacher's conditional, it returns exactly the token the teacher's flow map gives).
    temperature: "flow" maps over softmax(logits / temperature): 1 keeps the student's
    distribution, below 1 sharpens it towards the argmax (-> 0: the argmax itself).
    flow_steps: the choice solver's main-grid steps (`core.choosers.choice_solver_config`: a
    cheaper solver than pair generation's exact one; None: its default)."""
    if choice == "argmax":
        return argmax_choice
    if choice != "flow":
        raise ValueError(f"DD choice must be one of {', '.join(DD_CHOICES)}, got {choice!r}")
    return dd_flow_choice(codebook, flow_steps, temperature)


@torch.no_grad()
def sample_dd(student: Student, noise: Tensor, cond: Condition, t_list: Sequence[int],
              split: int, codebook: Tensor, choose: TokenChoice = argmax_choice) -> DDSample:
    """DD few-step sampling (method.md §6): noise (B, N, d) -> DDSample.

    t_list: (0,) one step, (0, t2) two steps, any increasing list from 0; split: AR steps
    whose positions take the logits head (the rest take the continuous head); choose: how the
    logits become tokens (`dd_token_choice`)."""
    x = few_step(student, noise, cond, [int(t) for t in t_list], int(split), codebook,
                 choose=choose)
    return DDSample(x, nearest_codes(x, codebook))


@torch.no_grad()
def sample_teacher_involved(student: Student, teacher: Teacher, noise: Tensor, cond: Condition,
                            n: int, m: int, split: int, codebook: Tensor, choose: Chooser, *,
                            sampling: SamplingConfig | None = None,
                            official_prefix_quirk: bool = False,
                            dd_choose: TokenChoice = argmax_choice) -> DDSample:
    """"pre-trained-n-m" (method.md §6): a DD step, the teacher regenerates steps n..m-1,
    a DD step at m. official_prefix_quirk: VAR only, run the teacher's prefix without the
    block-causal mask as the official `intermediate_sample` does (oracle compatibility)."""
    options = {"official_prefix_quirk": True} if official_prefix_quirk else {}
    if official_prefix_quirk and teacher.family != "var":
        raise ValueError("official_prefix_quirk applies to VAR teachers only")
    x = teacher_involved(student, teacher, noise, cond, (0, int(m)), int(n), int(split),
                         codebook, choose, sampling, dd_choose=dd_choose, **options)
    return DDSample(x, nearest_codes(x, codebook))
