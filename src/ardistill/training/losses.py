"""The DD training loss (method.md §5) on one batch of `TrainingInputs`.

Every term is a per-example mean over that example's loss positions, then a mean over the
batch. Per-example normalisation keeps examples of different t equally weighted and makes the
loss of a global batch the mean of its DDP shards' losses (equal shard sizes), so DDP gradient
averaging computes exactly the single-process gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ardistill.core.pairs_dataset import TrainingInputs
from ardistill.student.base import StudentOutput
from ardistill.teachers.base import Teacher, TokenLayout
from ardistill.training.config import LossConfig
from ardistill.training.perceptual import PerceptualLoss, decode_with_grad


@dataclass
class LossTerms:
    """total: scalar float32 (what is minimised); the others detached scalars (for logs)."""

    total: Tensor
    ce: Tensor
    latent: Tensor
    perceptual: Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("total", "ce", "latent", "perceptual")}


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """values, mask: (B, N) -> (B,) mean over each row's True positions (0 where none)."""
    m = mask.to(values.dtype)
    return (values * m).sum(1) / m.sum(1).clamp_min(1.0)


def conti_mask(layout: TokenLayout, inp: TrainingInputs, split: int) -> Tensor:
    """(B, N) bool: generated positions the continuous head is trained on (>= begin(split))."""
    n = inp.loss_mask.shape[1]
    after_split = torch.arange(n, device=inp.loss_mask.device) >= layout.begin(split)
    return inp.loss_mask & after_split[None, :]


def dd_loss(
    out: StudentOutput,
    inp: TrainingInputs,
    codebook: Tensor,
    layout: TokenLayout,
    split: int,
    cfg: LossConfig,
    *,
    teacher: Teacher | None = None,
    perceptual: PerceptualLoss | None = None,
) -> LossTerms:
    """out: the student's outputs on inp.x_t (logits for all N positions); codebook: (V, d)
    float32 `teacher.dd_codebook()`; split: AR steps decided by the logits head. The
    perceptual term needs `teacher` (its decoder) and `perceptual`."""
    zero = out.conti.new_zeros((), dtype=torch.float32)
    ce = lat = per = zero
    if cfg.ce > 0:
        logits = out.logits.float()  # (B, N, V)
        tok_ce = F.cross_entropy(logits.transpose(1, 2), inp.targets, reduction="none")  # (B, N)
        ce = _masked_mean(tok_ce, inp.loss_mask).mean()
    cmask = conti_mask(layout, inp, split)
    target_vec = codebook[inp.targets].float()  # (B, N, d)
    if cfg.latent > 0:
        sq = (out.conti.float() - target_vec).pow(2).mean(-1)  # (B, N)
        lat = _masked_mean(sq, cmask).mean()
    if cfg.uses_perceptual:
        if teacher is None or perceptual is None:
            raise ValueError("the perceptual loss needs the teacher and a PerceptualLoss")
        # The image sampling would produce, with the logits part replaced by its targets
        # (argmax has no gradient): continuous head where it is used, targets elsewhere.
        seq = torch.where(cmask[..., None], out.conti.float(), target_vec)
        pred = decode_with_grad(teacher, seq)
        with torch.no_grad():
            target = decode_with_grad(teacher, target_vec)
        per = perceptual(pred, target).mean()
    total = cfg.ce * ce + cfg.latent * lat + cfg.perceptual_weight * per
    return LossTerms(total, ce.detach(), lat.detach(), per.detach())
