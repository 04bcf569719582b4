"""The paper's baselines (method.md §7): onestep* and skip-k, for both families.

onestep*: every position is drawn independently from its per-position marginal token
frequency, estimated from teacher samples (`token_marginals`: the tokens of a pairs dataset or
fresh teacher samples). No network. The draw goes through any chooser, so with the flow choice
it is also a deterministic function of the noise.

skip-k (the paper does not say how skipped positions are filled; our definition): the teacher
runs its first `S - k` AR steps (S = layout.num_steps) as usual; every position of the skipped
steps is then drawn, independently and with the same chooser, from the teacher's distribution
of its LAST COMPUTED step (step S - k - 1), which the AR loop has already computed:
- LlamaGen (raster): that step is one position, so every remaining position gets a draw from
  the distribution of the last generated token (the teacher's best guess of "a next token"
  given the prefix; it cannot see the positions it never generated);
- VAR (next-scale): the last computed scale's p x p grid of distributions is upsampled to each
  skipped scale's grid by nearest neighbour (the way VAR relates scales spatially), and each
  skipped token is drawn from the distribution at its location.
No teacher pass beyond the S - k steps runs, so the time is exactly that of S - k steps (the
point of skipping); filling costs one chooser call per skipped step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ardistill.core.captions import Captions
from ardistill.core.choosers import RowMultinomialChooser
from ardistill.core.pairs_dataset import PairsDataset
from ardistill.core.seeds import caption_rows, choice_seeds, sample_labels
from ardistill.teachers.base import (
    Chooser,
    Condition,
    SamplingConfig,
    Teacher,
    TokenLayout,
    decode,
)


def token_marginals(tokens: Tensor, vocab_size: int, smoothing: float = 0.0) -> Tensor:
    """Per-position token frequencies: tokens (M, N) int64 -> (N, V) float32, rows sum to 1.

    smoothing: pseudo-count added to every (position, token) cell before normalising (0: plain
    frequencies, the paper's estimate)."""
    if tokens.dim() != 2 or tokens.is_floating_point():
        raise ValueError(f"tokens must be (M, N) integers, got {tokens.dtype} "
                         f"{tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError("token_marginals needs at least one sample")
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size:
        raise ValueError(f"token ids outside [0, {vocab_size})")
    n = tokens.shape[1]
    counts = torch.zeros(n, vocab_size, dtype=torch.float64)
    ones = torch.ones(n, tokens.shape[0], dtype=torch.float64)
    counts.scatter_add_(1, tokens.long().T.cpu(), ones)
    counts += smoothing
    return (counts / counts.sum(-1, keepdim=True)).float()


@torch.no_grad()
def estimate_marginals(teacher: Teacher, method, *, seed: int, batch_size: int,
                       captions: Captions | None = None) -> Tensor:
    """onestep* marginals (N, V) of `method` (`sampling.spec.OneStepMethod`): from the pairs
    dataset `method.marginals` (its teacher must be this one) or from `method.marginal_samples`
    fresh multinomial teacher samples (balanced classes, or the caption rows i mod R of
    `captions` for a text-conditional teacher)."""
    if method.marginals is not None:
        ds = PairsDataset(method.marginals)
        if ds.teacher_fingerprint != teacher.fingerprint():
            raise ValueError(f"{method.marginals}: pairs of another teacher than {teacher.name}")
        tokens = torch.from_numpy(ds.read(np.arange(len(ds)))["tokens"])
        return token_marginals(tokens, teacher.vocab_size)
    device = teacher.dd_codebook().device
    chunks = []
    for first in range(0, method.marginal_samples, batch_size):
        index = np.arange(first, min(method.marginal_samples, first + batch_size))
        if captions is not None:
            cond = captions.condition(caption_rows(index, captions.rows)).to(device)
        else:
            labels = sample_labels(seed, index, "balanced", list(range(teacher.num_classes)))
            cond = Condition(labels=labels.to(device))
        choose = RowMultinomialChooser(choice_seeds(seed, index, b"marginals").tolist())
        chunks.append(decode(teacher, cond, teacher.default_sampling, choose).cpu())
    return token_marginals(torch.cat(chunks), teacher.vocab_size)


@torch.no_grad()
def sample_onestep(marginals: Tensor, layout: TokenLayout, batch: int, choose: Chooser) -> Tensor:
    """onestep*: marginals (N, V) float32 -> (batch, N) int64, every position independent.

    The chooser sees each AR step's positions with their marginals, as (batch, l, V)."""
    if marginals.shape[0] != layout.num_positions:
        raise ValueError(f"marginals cover {marginals.shape[0]} positions, the layout has "
                         f"{layout.num_positions}")
    out = []
    for s in range(layout.num_steps):
        p = marginals[layout.step_slice(s)].float()
        out.append(choose(s, p[None].expand(batch, -1, -1).contiguous()).long().cpu())
    return torch.cat(out, dim=1)


def _fill_probs(layout: TokenLayout, last: Tensor, last_step: int, step: int) -> Tensor:
    """The last computed step's distributions (B, l, V) spread over `step`'s positions."""
    b, _, v = last.shape
    if layout.kind == "raster":
        return last.expand(b, layout.step_sizes[step], v).contiguous()
    p_from, p_to = layout.patch_nums[last_step], layout.patch_nums[step]
    idx = torch.arange(p_to, device=last.device) * p_from // p_to  # nearest neighbour
    grid = last.view(b, p_from, p_from, v)[:, idx][:, :, idx]
    return grid.reshape(b, p_to * p_to, v)


@torch.no_grad()
def sample_skip(teacher: Teacher, cond: Condition, skip: int, choose: Chooser,
                sampling: SamplingConfig | None = None, **options) -> Tensor:
    """skip-k (module docstring): the teacher runs S - k steps, the last k steps' positions are
    filled from the last computed step's distribution. -> (B, N) int64 tokens."""
    layout = teacher.layout
    s_total = layout.num_steps
    if not 1 <= skip < s_total:
        raise ValueError(f"skip must be in [1, {s_total - 1}] for {teacher.name}, got {skip}")
    sampling = teacher.default_sampling if sampling is None else sampling
    session = teacher.start(cond, sampling, **options)
    chunks, last = [], None
    for step in range(s_total - skip):
        last = session.next_probs()
        tokens = choose(step, last).long()
        chunks.append(tokens)
        if step < s_total - skip - 1:  # the last computed step's tokens need no further pass
            session.push(tokens)
    for step in range(s_total - skip, s_total):
        chunks.append(choose(step, _fill_probs(layout, last, s_total - skip - 1, step)).long())
    return torch.cat([c.to(chunks[0].device) for c in chunks], dim=1)
