"""VAR's multi-scale residual quantizer: per-scale indices, the f_hat accumulation, Phi.

Notation (oracle README §5.1): K scales with side `pn_s` (patch_nums), P = pn_{K-1} the latent
side, Cvae the codebook dimension. Scale s contributes `Phi_s(up(embedding(idx_s)))` to
f_hat, where `up` is a bicubic resize to P x P (none at the last scale). Downsizing (the
residual before quantising, and f_hat before it feeds the next scale) is an area resize.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Phi(nn.Conv2d):
    """Phi(h) = (1 - r) h + r conv3x3(h): the residual refinement after upsampling."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h: Tensor) -> Tensor:
        return h.mul(1 - self.ratio) + super().forward(h).mul(self.ratio)


def phi_indices(num_phi: int, num_scales: int) -> list[int]:
    """Which of `num_phi` shared Phi convolutions scale s uses, for every s.

    Official rule: argmin |ticks - s/(K-1)| with ticks = linspace(1/(3n), 1-1/(3n), n) for
    n == 4, else linspace(1/(2n), 1-1/(2n), n), in numpy float64. Exact ties occur (s/(K-1)
    = 0.5 with n = 4); float64 rounding and argmin's first-minimum rule decide them, so this
    is computed with numpy exactly like the official code rather than re-derived.
    """
    n = num_phi
    if n == 4:
        ticks = np.linspace(1 / 3 / n, 1 - 1 / 3 / n, n)
    else:
        ticks = np.linspace(1 / 2 / n, 1 - 1 / 2 / n, n)
    denom = max(num_scales - 1, 1)
    return [int(np.argmin(np.abs(ticks - s / denom))) for s in range(num_scales)]


class PhiPartiallyShared(nn.Module):
    def __init__(self, channels: int, ratio: float, num_phi: int) -> None:
        super().__init__()
        self.qresi_ls = nn.ModuleList([Phi(channels, ratio) for _ in range(num_phi)])


@dataclass
class QuantizerOutput:
    """What a VQVAE training step needs from the quantizer (official `VectorQuantizer2.forward`).

    f_hat: (B, Cvae, P, P) float32, straight-through: its value is the quantised f_hat, its
        gradient flows to the encoder as if it were f.
    indices: per-scale (B, pn*pn) int64.
    codebook_loss: mean over scales of mse(f_hat_s, f.detach()) (trains codebook and Phi).
    commitment_loss: mean over scales of mse(f_hat_s.detach(), f) (trains the encoder; already
        multiplied by beta).
    vq_loss: codebook_loss + commitment_loss, the official total.
    """

    f_hat: Tensor
    indices: list[Tensor]
    codebook_loss: Tensor
    commitment_loss: Tensor

    @property
    def vq_loss(self) -> Tensor:
        return self.codebook_loss + self.commitment_loss


class MultiScaleQuantizer(nn.Module):
    """State-dict keys: `embedding.weight` (V, Cvae), `quant_resi.qresi_ls.{i}.{weight,bias}`,
    and the buffer `ema_vocab_hit_SV` (K, V) (codebook usage statistics from training)."""

    def __init__(self, vocab_size: int, cvae: int, patch_nums: tuple[int, ...], beta: float,
                 quant_resi: float, share_quant_resi: int) -> None:
        super().__init__()
        self.vocab_size, self.cvae = vocab_size, cvae
        self.patch_nums = tuple(patch_nums)
        self.beta = beta
        self.quant_resi = PhiPartiallyShared(cvae, quant_resi, share_quant_resi)
        self.phi_index = phi_indices(share_quant_resi, len(self.patch_nums))
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), vocab_size))
        self.embedding = nn.Embedding(vocab_size, cvae)
        self._hits_recorded = 0  # training-time EMA counter (official `record_hit`)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def phi(self, si: int) -> Phi:
        return self.quant_resi.qresi_ls[self.phi_index[si]]

    def scale_contribution(self, si: int, h: Tensor) -> Tensor:
        """h: (B, Cvae, pn_s, pn_s) codebook vectors of scale s -> Phi_s(up(h)): (B, Cvae, P, P)."""
        P = self.patch_nums[-1]
        if si != self.num_scales - 1:
            h = F.interpolate(h, size=(P, P), mode="bicubic")
        return self.phi(si)(h)

    def scale_vectors(self, si: int, idx: Tensor) -> Tensor:
        """idx: (B, pn_s^2) int64 -> (B, Cvae, pn_s, pn_s) codebook vectors."""
        pn = self.patch_nums[si]
        return self.embedding(idx).transpose(1, 2).reshape(idx.shape[0], self.cvae, pn, pn)

    def nearest(self, z: Tensor) -> Tensor:
        """z: (N, Cvae) -> (N,) int64 nearest codebook rows (plain L2, codebook not normalised)."""
        w = self.embedding.weight.detach()
        d = z.square().sum(1, keepdim=True) + w.square().sum(1)
        d = d.addmm(z, w.T, alpha=-2, beta=1)  # ||z||^2 + ||w||^2 - 2 z.w, the official form
        return d.argmin(dim=1)

    def f_to_indices(self, f: Tensor) -> list[Tensor]:
        """f: (B, Cvae, P, P) encoder features -> per-scale indices [(B, pn^2) int64].
        Official `f_to_idxBl_or_fhat(to_fhat=False)`: quantise the area-resized residual."""
        return self._quantize(f.detach())[1]

    def _quantize(self, f: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Returns (f_hat after each scale [(B, Cvae, P, P)], indices [(B, pn^2)])."""
        B, C, P, _ = f.shape
        if P != self.patch_nums[-1]:
            raise ValueError(f"feature map is {P}x{P}, the last scale is {self.patch_nums[-1]}")
        f_rest, f_hat = f.clone(), torch.zeros_like(f)
        fhats, idxs = [], []
        for si, pn in enumerate(self.patch_nums):
            last = si == self.num_scales - 1
            z = f_rest if last else F.interpolate(f_rest, (pn, pn), mode="area")
            idx = self.nearest(z.permute(0, 2, 3, 1).reshape(-1, C)).view(B, pn * pn)
            h = self.scale_contribution(si, self.scale_vectors(si, idx))
            f_hat = f_hat + h
            f_rest = f_rest - h
            fhats.append(f_hat)
            idxs.append(idx)
        return fhats, idxs

    def indices_to_var_input(self, indices: list[Tensor]) -> Tensor:
        """Teacher-forcing input (official `idxBl_to_var_input`).

        indices: per-scale [(B, pn_s^2) int64] for s = 0..k-1 (k >= 1; only scales < k-1 are
        read). Returns (B, begin(k) - first_l, Cvae) float32: for s = 1..k-1 the area-resize of
        f_hat after scale s-1 to pn_s x pn_s, flattened row-major.
        """
        B = indices[0].shape[0]
        P = self.patch_nums[-1]
        f_hat = torch.zeros(B, self.cvae, P, P, device=indices[0].device)
        out = []
        for si in range(len(indices) - 1):
            f_hat = f_hat + self.scale_contribution(si, self.scale_vectors(si, indices[si]))
            pn = self.patch_nums[si + 1]
            out.append(F.interpolate(f_hat, (pn, pn), mode="area").flatten(2).transpose(1, 2))
        if not out:
            return torch.zeros(B, 0, self.cvae, device=indices[0].device)
        return torch.cat(out, dim=1)

    def add_scale(self, si: int, f_hat: Tensor, h: Tensor) -> Tensor | None:
        """In place: f_hat += Phi_s(up(h)) (official `get_next_autoregressive_input`).

        f_hat: (B, Cvae, P, P); h: (B, Cvae, pn_s, pn_s). Returns the next scale's input map
        (B, Cvae, pn_{s+1}, pn_{s+1}) (area resize of f_hat), or None after the last scale.
        """
        f_hat.add_(self.scale_contribution(si, h))
        if si == self.num_scales - 1:
            return None
        pn = self.patch_nums[si + 1]
        return F.interpolate(f_hat, (pn, pn), mode="area")

    def vectors_to_fhat(self, x: Tensor, *, per_scale: bool = False) -> Tensor:
        """x: (B, L, Cvae) per-scale vectors, scale-major -> final f_hat (B, Cvae, P, P), or
        with per_scale=True the f_hat after every scale stacked: (K, B, Cvae, P, P)."""
        B, L, C = x.shape
        total = sum(p * p for p in self.patch_nums)
        if L != total or C != self.cvae:
            raise ValueError(f"expected (B, {total}, {self.cvae}) latents, got {tuple(x.shape)}")
        P = self.patch_nums[-1]
        f_hat = x.new_zeros(B, C, P, P)
        steps, cur = [], 0
        for si, pn in enumerate(self.patch_nums):
            h = x[:, cur : cur + pn * pn].transpose(1, 2).reshape(B, C, pn, pn)
            self.add_scale(si, f_hat, h)
            if per_scale:
                steps.append(f_hat.clone())
            cur += pn * pn
        return torch.stack(steps) if per_scale else f_hat

    def forward(self, f: Tensor) -> QuantizerOutput:
        """Training path. f: (B, Cvae, P, P) float32 encoder features (with gradient)."""
        fhats, idxs = self._quantize(f.detach())
        K = self.num_scales
        codebook = sum(F.mse_loss(fh, f.detach()) for fh in fhats) / K
        commit = sum(F.mse_loss(fh.detach(), f) for fh in fhats) * (self.beta / K)
        if self.training:
            self._record_hits(idxs)
        f_hat = (fhats[-1].detach() - f.detach()) + f  # straight-through estimator
        return QuantizerOutput(f_hat, idxs, codebook, commit)

    @torch.no_grad()
    def _record_hits(self, idxs: list[Tensor]) -> None:
        # The official EMA schedule of codebook usage: copy, then 0.9, then (after 100) 0.99.
        for si, idx in enumerate(idxs):
            hit = idx.flatten().bincount(minlength=self.vocab_size).float()
            row = self.ema_vocab_hit_SV[si]
            if self._hits_recorded == 0:
                row.copy_(hit)
            elif self._hits_recorded < 100:
                row.mul_(0.9).add_(hit.mul(0.1))
            else:
                row.mul_(0.99).add_(hit.mul(0.01))
        self._hits_recorded += 1
