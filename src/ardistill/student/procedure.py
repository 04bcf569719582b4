"""The DD sampling procedure on top of any `Student` (method.md §3, §6).

Everything is in AR steps through `TokenLayout`: at DD timestep `t` the first `layout.begin(t)`
positions hold data (codebook vectors) and the rest hold the ORIGINAL noise. These functions
match the official release (`eval_fewstep.py`, `VAR/sample.py`), which the oracle pack records:

- X_t (`teachers.base.dd_state`): data before `begin(t)`, the same initial noise after;
- `final_predict`: student outputs from `begin(t)` on; before it the input vectors and one-hot
  logits at their nearest codeword (at t = 0 the raw outputs);
- `final_sequence(..., split)`: `codebook[argmax logits]` before `begin(split)`, the continuous
  head from there on;
- `few_step`: `x = noise`; for t in t_list:
  `x = final_sequence(final_predict(student(X_t)))`. Each `step` computes exactly that,
  asking the student for the logits of the positions it uses only (`logits_range`);
- `teacher_involved`: "pre-trained-n-m" (method.md §6): a DD step, the teacher regenerates
  steps n..m-1 after the snapped prefix (any chooser: greedy, multinomial, or the flow map
  through `core.choosers.NoiseChooser`), a DD step at m.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ardistill.student.base import Student, StudentOutput
from ardistill.teachers.base import (
    Chooser,
    Condition,
    SamplingConfig,
    Teacher,
    TokenLayout,
    dd_state,
    decode,
)


def nearest_codes(x: Tensor, codebook: Tensor, chunk: int = 4096) -> Tensor:
    """argmin_v ||codebook[v] - x||^2 for x (..., d), codebook (V, d) -> (...) int64.

    Computed as ||x||^2 + ||c||^2 - 2 x.c in float32, in chunks of rows (memory bounded)."""
    flat = x.reshape(-1, x.shape[-1]).float()
    cb = codebook.float()
    c2 = (cb * cb).sum(-1)
    out = torch.empty(flat.shape[0], dtype=torch.long, device=x.device)
    for i in range(0, flat.shape[0], chunk):
        xs = flat[i : i + chunk]
        d = (xs * xs).sum(-1, keepdim=True) + c2[None] - 2.0 * xs @ cb.T
        out[i : i + chunk] = d.argmin(-1)
    return out.view(x.shape[:-1])


def final_predict(
    layout: TokenLayout, out: StudentOutput, x_t: Tensor, t: Tensor, codebook: Tensor
) -> StudentOutput:
    """Keep the given data before begin(t): its vectors and one-hot logits (0 at the nearest
    codeword, -inf elsewhere); student outputs from begin(t) on. Shapes as StudentOutput."""
    if bool((t == 0).all()):
        return out
    m = layout.data_mask(t, x_t.shape[1])
    idx = nearest_codes(x_t, codebook)
    onehot = torch.full_like(out.logits, float("-inf"))
    onehot.scatter_(-1, idx[..., None], 0.0)
    conti = torch.where(m[..., None], x_t.to(out.conti.dtype), out.conti)
    logits = torch.where(m[..., None], onehot, out.logits)
    return StudentOutput(conti, logits)


def final_sequence(
    layout: TokenLayout, fp: StudentOutput, split: int, codebook: Tensor
) -> Tensor:
    """(B, N, d): codebook[argmax logits] at positions < begin(split), continuous head after."""
    n_disc = layout.begin(split)
    snapped = codebook[fp.logits[:, :n_disc].argmax(-1)].to(fp.conti.dtype)
    return torch.cat([snapped, fp.conti[:, n_disc:]], dim=1)


# How the logits head's positions become tokens: (logits (B, l, V) float, the input noise of
# those positions (B, l, d)) -> (B, l) int64. The official rule is the argmax.
TokenChoice = Callable[[Tensor, Tensor], Tensor]


def argmax_choice(logits: Tensor, noise: Tensor) -> Tensor:
    """The official rule: the most likely token of each position."""
    return logits.argmax(-1)


def step(
    student: Student,
    x: Tensor,
    noise: Tensor,
    cond: Condition,
    t: int,
    split: int,
    codebook: Tensor,
    choose: TokenChoice = argmax_choice,
    keep: int | None = None,
) -> Tensor:
    """One DD step at timestep t: (B, N, d) current sequence -> (B, N, d) new sequence.

    Equals `final_sequence(final_predict(student(X_t)), split)`, computing only what that
    uses: the logits head runs on positions begin(t)..begin(split)-1 only (before begin(t)
    final_predict replaces the logits by the one-hot of the nearest codeword). choose: how
    those logits become tokens (default argmax, the official rule; `sampling.methods` has a
    noise-driven one). keep: the positions the next step keeps (`begin` of its timestep;
    None: all): `choose` runs on the logits positions before it only, the ones after (which
    the next step replaces by their noise) take the argmax, so a costly choice (the flow map)
    is paid once per position over a whole few-step run."""
    layout = student.layout
    lo, hi = layout.begin(t), layout.begin(split)
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    x_t = dd_state(layout, x, noise, tt)
    out = student(x_t, cond, tt, logits_range=(lo, max(lo, hi)))
    seq = out.conti.clone()  # (B, N, d); tiny, and keeps the student's output untouched
    seq[:, :lo] = x_t[:, :lo]  # data positions keep their vectors (final_predict)
    n_snap = min(lo, hi)  # data positions before the split: snapped to the nearest codeword
    if n_snap:
        seq[:, :n_snap] = codebook[nearest_codes(x_t[:, :n_snap], codebook)].to(seq.dtype)
    if hi > lo:
        mid = hi if keep is None else min(hi, max(lo, keep))
        tokens = out.logits.argmax(-1) if mid < hi else None
        if mid > lo:
            chosen = choose(out.logits[:, : mid - lo], noise[:, lo:mid])
            tokens = chosen if tokens is None else torch.cat([chosen, tokens[:, mid - lo :]], 1)
        seq[:, lo:hi] = codebook[tokens].to(seq.dtype)
    return seq


@torch.no_grad()
def few_step(
    student: Student,
    noise: Tensor,
    cond: Condition,
    t_list: Sequence[int],
    split: int,
    codebook: Tensor,
    return_all: bool = False,
    choose: TokenChoice = argmax_choice,
) -> Tensor | list[Tensor]:
    """The official few-step sampler: noise (B, N, d) -> (B, N, d) final sequence.

    t_list: increasing DD timesteps, starting at 0 ([0] for 1-step, [0, t2] for 2-step).
    return_all: also return the sequence after every step (a list, last = final).
    choose: how the logits head's positions become tokens (`step`; before the last step only
    on the positions the next step keeps: the final sequence is the same, and a costly choice
    runs once per position)."""
    _check_t_list(student.layout, t_list)
    x, seqs = noise, []
    ts = [int(t) for t in t_list]
    for i, t in enumerate(ts):
        keep = student.layout.begin(ts[i + 1]) if i + 1 < len(ts) else None
        x = step(student, x, noise, cond, t, split, codebook, choose, keep=keep)
        seqs.append(x)
    return seqs if return_all else x


def _check_t_list(layout: TokenLayout, t_list: Sequence[int]) -> None:
    if not t_list or int(t_list[0]) != 0:
        raise ValueError(f"t_list must start at 0, got {list(t_list)}")
    if any(int(b) <= int(a) for a, b in zip(t_list, t_list[1:])):
        raise ValueError(f"t_list must be strictly increasing, got {list(t_list)}")
    if int(t_list[-1]) >= layout.num_steps:
        raise ValueError(f"t_list {list(t_list)} reaches past the last step {layout.num_steps - 1}")


# ----------------------------------------------------------------------------- teacher-involved


@dataclass
class TeacherInvolvedTrace:
    """Intermediate states of `teacher_involved` (N positions, d codebook dims).

    x_step1: (B, N, d) sequence after the first DD step; snapped: (B, N) int64 its nearest
    codewords (both None when teacher_start == 0); teacher_tokens: (B, begin(m)) int64, the
    snapped prefix then the teacher's tokens; x_teacher: (B, N, d) codebook[teacher_tokens]
    then the original noise; x: (B, N, d) the final sequence."""

    x_step1: Tensor | None
    snapped: Tensor | None
    teacher_tokens: Tensor
    x_teacher: Tensor
    x: Tensor


@torch.no_grad()
def teacher_involved(
    student: Student,
    teacher: Teacher,
    noise: Tensor,
    cond: Condition,
    t_list: Sequence[int],
    teacher_start: int,
    split: int,
    codebook: Tensor,
    choose: Chooser,
    sampling: SamplingConfig | None = None,
    *,
    return_trace: bool = False,
    dd_choose: TokenChoice = argmax_choice,
    **teacher_options,
) -> Tensor | TeacherInvolvedTrace:
    """"pre-trained-n-m" sampling (method.md §6; eval_combine_sample.py, VAR combine_sample.py).

    t_list = (0, m), teacher_start = n (AR steps, 0 <= n < m <= num_steps):
    1. n > 0: one DD step at t = 0 from `noise` (B, N, d); snap every position to its nearest
       codeword and keep the first begin(n) tokens (n = 0 skips this step);
    2. the teacher generates steps n..m-1 after that prefix (`decode` with `choose`:
       greedy, `MultinomialChooser`, or `core.choosers.NoiseChooser` over the flow map; `sampling`
       defaults to `teacher.default_sampling`; `teacher_options` go to `teacher.start`, e.g.
       VAR's `official_prefix_quirk=True`);
    3. x = cat(codebook[tokens], noise[:, begin(m):]); one DD step at t = m (none when
       m == num_steps). Both DD steps use `split` and `dd_choose` (`step`'s `choose`).
    Returns the final (B, N, d) sequence, or a `TeacherInvolvedTrace` with `return_trace`.
    """
    layout = student.layout
    _check_teacher_involved(layout, teacher, t_list, teacher_start)
    m, n = int(t_list[1]), int(teacher_start)
    sampling = teacher.default_sampling if sampling is None else sampling
    x_step1 = snapped = prefix = None
    if n > 0:
        x_step1 = step(student, noise, noise, cond, int(t_list[0]), split, codebook, dd_choose)
        snapped = nearest_codes(x_step1, codebook)
        prefix = snapped[:, : layout.begin(n)]
    tokens = decode(teacher, cond, sampling, choose, prefix=prefix, end_step=m, **teacher_options)
    tokens = tokens.to(codebook.device, torch.long)
    x_teacher = torch.cat([codebook[tokens].to(noise.dtype), noise[:, tokens.shape[1] :]], dim=1)
    x = x_teacher
    if m < layout.num_steps:
        x = step(student, x_teacher, noise, cond, m, split, codebook, dd_choose)
    if return_trace:
        return TeacherInvolvedTrace(x_step1, snapped, tokens, x_teacher, x)
    return x


def _check_teacher_involved(layout: TokenLayout, teacher: Teacher, t_list: Sequence[int],
                            teacher_start: int) -> None:
    if teacher.layout != layout:
        raise ValueError(f"teacher layout {teacher.layout} differs from the student's {layout}")
    if len(t_list) != 2 or int(t_list[0]) != 0:
        raise ValueError(f"teacher-involved t_list must be (0, m), got {list(t_list)}")
    m = int(t_list[1])
    if not 0 <= int(teacher_start) < m <= layout.num_steps:
        raise ValueError(f"need 0 <= teacher_start < m <= {layout.num_steps}, got "
                         f"teacher_start={teacher_start}, m={m}")
