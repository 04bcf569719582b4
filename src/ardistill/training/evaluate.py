"""Held-out evaluation during training: token agreement with the flow-mapped targets.

For held-out pairs (noise, tokens, condition) the student samples from the stored noise with
the DD procedure (`few_step`, t_list (0,) or (0, t2)); the final sequence is snapped to the
nearest codewords (the continuous-head positions included) and compared with the stored tokens
position by position. 1.0 means the student reproduces the teacher + flow map exactly.

Baseline (method.md §7, onestep*): every position drawn independently from its marginal token
frequencies f_i (estimated from the training pairs). Its expected agreement with held-out
tokens y is the mean over positions and samples of f_i(y_i), in closed form
(`onestep_expected_agreement`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ardistill.core.pairs_dataset import PairsDataset
from ardistill.student.base import Student
from ardistill.student.procedure import few_step, nearest_codes


@torch.no_grad()
def student_tokens(student: Student, noise: Tensor, cond, t_list: tuple[int, ...], split: int,
                   codebook: Tensor) -> Tensor:
    """(B, N, d) noise -> (B, N) int64 tokens: DD sampling, then nearest codewords."""
    seq = few_step(student, noise.to(codebook.device), cond.to(codebook.device), t_list, split,
                   codebook)
    return nearest_codes(seq, codebook)


@torch.no_grad()
def heldout_agreement(student: Student, held: PairsDataset, codebook: Tensor, split: int,
                      t_lists: dict[str, tuple[int, ...]], num: int,
                      batch: int = 64) -> dict[str, float]:
    """{name: agreement} for each t_list (e.g. {"agree_1step": (0,), "agree_2step": (0, 20)})
    over the first `num` held-out samples."""
    num = min(num, len(held))
    if num == 0:
        return {}
    hits = {k: 0.0 for k in t_lists}
    total = 0
    for b0 in range(0, num, batch):
        pb = held.get(torch.arange(b0, min(num, b0 + batch)))
        target = pb.tokens.to(codebook.device)
        for name, t_list in t_lists.items():
            tok = student_tokens(student, pb.noise, pb.cond, t_list, split, codebook)
            hits[name] += float((tok == target).double().sum())
        total += target.numel()
    return {k: v / total for k, v in hits.items()}


def marginal_frequencies(ds: PairsDataset, vocab_size: int, batch: int = 1024) -> Tensor:
    """(N, V) float64 per-position token frequencies over all samples of `ds`."""
    n_pos = ds.layout.num_positions
    counts = torch.zeros(n_pos, vocab_size, dtype=torch.float64)
    for b0 in range(0, len(ds), batch):
        tok = torch.from_numpy(ds.read(range(b0, min(len(ds), b0 + batch)))["tokens"])
        counts.scatter_add_(1, tok.T.contiguous(), torch.ones(tok.T.shape, dtype=torch.float64))
    return counts / max(len(ds), 1)


def onestep_expected_agreement(freqs: Tensor, held: PairsDataset, num: int | None = None) -> float:
    """Expected token agreement of onestep* (freqs: (N, V) from the training pairs) with the
    first `num` held-out samples: mean_{b,i} freqs[i, y_bi] (closed form, no sampling)."""
    num = len(held) if num is None else min(num, len(held))
    tok = torch.from_numpy(held.read(range(num))["tokens"])  # (num, N)
    pos = torch.arange(tok.shape[1])[None, :].expand_as(tok)
    return float(freqs[pos, tok].mean())
