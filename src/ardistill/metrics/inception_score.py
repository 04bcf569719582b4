"""Inception Score (Salimans et al. 2016): `exp(E_x KL(p(y|x) || p(y)))` over splits.

As the standard implementations: the samples are cut into `splits` parts (10 by default),
each part gets its own marginal `p(y)` and score, and the result is the mean and the
(population, ddof=0) standard deviation of the per-part scores. Before splitting, the samples
are permuted by a fixed seed (as torch-fidelity does, seed 2020 by default; a local generator,
so the score stays a deterministic function of the inputs): sample files are often written in
class order, and consecutive parts would then each see a few classes only. Parts are
`torch.tensor_split` pieces (sizes differ by at most one, no sample dropped). Computed in
float64 from logits (log-softmax, so one-hot predictions stay finite).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def inception_score(
    logits: Tensor, splits: int = 10, shuffle_seed: int | None = 2020
) -> tuple[float, float]:
    """logits: (N, C) class logits (the FID Inception's are unbiased, see metrics.inception).

    shuffle_seed: seed of the permutation applied before splitting; None keeps the order.
    returns: (mean, std) of the per-split scores; uniform predictions give 1, confident
        predictions spread evenly over C classes give C.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in [1, N={n}], got {splits}")
    logp = torch.log_softmax(logits.detach().double().cpu(), dim=1)  # (N, C)
    if not torch.isfinite(logp).all():
        raise ValueError("logits contain NaN or infinite values")
    if shuffle_seed is not None and splits > 1:
        g = torch.Generator().manual_seed(shuffle_seed)
        logp = logp[torch.randperm(n, generator=g)]
    scores = []
    for part in torch.tensor_split(logp, splits):
        log_py = torch.logsumexp(part, dim=0) - math.log(part.shape[0])  # log mean_x p(y|x)
        kl = (part.exp() * (part - log_py)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    s = torch.tensor(scores, dtype=torch.float64)
    return float(s.mean()), float(s.std(unbiased=False))
