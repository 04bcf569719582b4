"""Right-padded encoder outputs -> the left-padded caption layout of LlamaGen t2i.

A tokenizer pads on the right (valid tokens first); LlamaGen's t2i sampling moves the valid
tokens to the END and flips the mask (autoregressive/sample/sample_t2i.py:main, the
"left-padding" block after `get_text_embeddings`), then zeroes the padding
(`c_indices = new_caption_embs * new_emb_masks[:, :, None]`). Row r with n valid tokens
becomes `cat(h[n:], h[:n])`, i.e. out[j] = h[(j + n) mod T]; its mask is the flipped one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def left_pad(hidden: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """hidden (R, T, D), mask (R, T) right-padded (each row: ones, then zeros) -> (caption
    (R, T, D) with the valid tokens at the end and zero padding, mask (R, T) bool flipped)."""
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"left_pad: need hidden (R, T, D) and mask (R, T), got "
                         f"{tuple(hidden.shape)} and {tuple(mask.shape)}")
    mask = mask.bool()
    n = mask.sum(dim=1)  # (R,) valid tokens per row
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device)
    if not torch.equal(mask, pos[None, :] < n[:, None]):
        raise ValueError("left_pad: the mask is not right-padded (ones, then zeros)")
    src = (pos[None, :] + n[:, None]) % t  # (R, T): out[r, j] = hidden[r, (j + n_r) mod T]
    moved = torch.gather(hidden, 1, src[..., None].expand(-1, -1, hidden.shape[2]))
    new_mask = mask.flip(-1)
    return moved * new_mask[..., None].to(moved.dtype), new_mask
