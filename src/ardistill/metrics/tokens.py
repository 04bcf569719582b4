"""Token-level metrics: agreement of two token sequences, and NLL in bits per token.

Token agreement compares, for the same noise, the tokens of a few-step sample with those of
the teacher + flow map (method.md §2: the map is deterministic, so agreement is well defined).
Bits per token turns the teacher's log-probabilities of sampled tokens into an NLL.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"token tensors must both be (B, N), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.is_floating_point() or b.is_floating_point():
        raise ValueError(f"token tensors must be integer, got {a.dtype} and {b.dtype}")


def token_agreement_per_position(a: Tensor, b: Tensor) -> Tensor:
    """a, b: (B, N) int64 -> (N,) float64: fraction of the batch where the tokens agree."""
    _check_pair(a, b)
    return (a == b).double().mean(dim=0).cpu()


def token_agreement(a: Tensor, b: Tensor) -> float:
    """a, b: (B, N) int64 -> fraction of all B * N positions with equal tokens."""
    _check_pair(a, b)
    return float((a == b).double().mean())


def bits_per_token(log_probs: Tensor, mask: Tensor | None = None) -> float:
    """Mean negative log-likelihood in bits: `-mean(log_probs) / ln 2`.

    log_probs: (B, N) (or any shape) natural-log probabilities of the sampled tokens (<= 0; a
        token of probability 0 gives -inf and so infinite bits).
    mask: optional bool tensor of the same shape; only True entries count.
    """
    lp = log_probs.detach().double()
    if torch.isnan(lp).any():
        raise ValueError("log_probs contain NaN")
    if (lp > 1e-6).any():
        raise ValueError(f"log_probs must be <= 0 (log-probabilities), max is {float(lp.max()):g}")
    if mask is not None:
        if mask.shape != lp.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool {tuple(lp.shape)}, got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        lp = lp[mask]
    if lp.numel() == 0:
        raise ValueError("bits_per_token: no tokens")
    return float(-lp.clamp(max=0.0).mean() / math.log(2.0))
