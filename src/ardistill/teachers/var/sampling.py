"""VAR's sampling distribution: the per-scale CFG ramp and VAR's own top-k / top-p.

Official `autoregressive_infer_cfg` + `models.helpers.sample_with_top_k_top_p_` (oracle README
§5.1). These differ from LlamaGen's: guidance ramps linearly over scales and top-p sorts
ascending (it removes tokens whose ascending cumulative probability is <= 1 - top_p, always
keeping the largest).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ardistill.teachers.base import SamplingConfig


def cfg_ramp(si: int, num_scales: int, cfg: float) -> float:
    """Guidance weight at scale si of K: w = cfg * si / (K - 1) (0 at the first scale)."""
    return cfg * (si / max(num_scales - 1, 1))


def guide(logits: Tensor, batch: int, w: float) -> Tensor:
    """logits: (2B, n, V), conditional half first -> (1 + w) cond - w uncond: (B, n, V)."""
    return (1 + w) * logits[:batch] - w * logits[batch:]


def check_sampling(sampling: SamplingConfig, vocab_size: int) -> None:
    if sampling.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {sampling.temperature}")
    if not 0 <= sampling.top_k <= vocab_size:
        raise ValueError(f"top_k={sampling.top_k} must be in [0, V={vocab_size}] (0 = off)")
    if not 0.0 <= sampling.top_p <= 1.0:
        raise ValueError(f"top_p={sampling.top_p} must be in [0, 1] (0 or 1 = off)")
    if sampling.cfg_scale < 0:
        raise ValueError(f"cfg_scale={sampling.cfg_scale} must be >= 0 (VAR: 0 = no guidance)")


def filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """VAR top-k then top-p: (..., V) float32 -> same shape with removed entries = -inf.

    top_k > 0: remove logits strictly below the k-th largest (ties at the cut are kept).
    0 < top_p < 1: sort ascending, remove where cumsum(softmax) <= 1 - top_p, keep the last.
    (top_p = 1 removes only entries whose probability underflows to 0: a no-op on the result.)
    """
    if top_k > 0:
        kth = logits.topk(top_k, dim=-1, largest=True, sorted=False).values.amin(-1, keepdim=True)
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if 0.0 < top_p < 1.0:
        sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(-1, sorted_idx, remove), -torch.inf)
    return logits


def probs_from_logits(logits: Tensor, sampling: SamplingConfig) -> Tensor:
    """Guided logits (B, n, V) -> sampling distribution (B, n, V) float32; rows sum to 1.

    Temperature (an ardistill extension; the official VAR sampler has none) divides the
    logits before filtering; 1.0 reproduces the official distribution exactly.
    """
    logits = logits.float()
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    return filter_logits(logits, sampling.top_k, sampling.top_p).softmax(dim=-1)
