"""Logit filtering with LlamaGen's official semantics (generate.py `logits_to_probs`).

- temperature: logits / max(T, 1e-5);
- top-k (k > 0): remove logits strictly below the k-th largest, so ties at the threshold stay;
- top-p (< 1): HuggingFace nucleus filtering: sort descending, cumulative softmax, remove
  where cum > p, shift the removal mask right by one so the most likely token always stays;
- removed entries become -inf, then softmax (removed probabilities are exactly 0).

The `*_` functions work in place on a float32 `(R, V)` buffer so a decode session allocates
nothing of vocabulary size per step beyond what sort/topk need.
"""

from __future__ import annotations

import torch
from torch import Tensor

_NEG_INF = float("-inf")


def check_filter_args(temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")


def top_k_(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row and every logit tied with the k-th; (R, V)."""
    vocab = logits.shape[-1]
    if k <= 0 or k >= vocab:
        return logits
    # k-th largest == (V - k + 1)-th smallest; kthvalue avoids sorting k values.
    kth = torch.kthvalue(logits, vocab - k + 1, dim=-1, keepdim=True).values
    return logits.masked_fill_(logits < kth, _NEG_INF)


def top_p_(logits: Tensor, p: float) -> Tensor:
    """HF nucleus filtering of (R, V) logits, in place (generate.py top_k_top_p_filtering)."""
    if p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum_(dim=-1)
    remove = cum > p
    # Shift right: the first token past the threshold is kept, and token 0 always stays.
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    mask = torch.empty_like(remove).scatter_(-1, sorted_idx, remove)
    return logits.masked_fill_(mask, _NEG_INF)


def filtered_probs_(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """(R, V) float32 logits -> sampling probabilities, computed in place in `logits`."""
    logits.div_(max(temperature, 1e-5))
    if top_k > 0 or top_p < 1.0:
        top_k_(logits, top_k)
        top_p_(logits, top_p)
    # softmax in place: exp(x - max) / sum (the same algorithm as torch.softmax).
    logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    return logits.div_(logits.sum(dim=-1, keepdim=True))


def filtered_probs(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """(..., V) logits (any float dtype) -> (..., V) float32 probabilities; input untouched."""
    shape = logits.shape
    flat = logits.reshape(-1, shape[-1]).to(torch.float32, copy=True)
    return filtered_probs_(flat, temperature, top_k, top_p).view(shape)
