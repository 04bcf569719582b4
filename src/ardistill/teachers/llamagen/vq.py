"""The LlamaGen VQ tokenizer (`VQModel`, VQ-16) with the official parameter names.

Conv encoder -> 1x1 `quant_conv` -> L2-normalised nearest-codeword quantiser -> 1x1
`post_quant_conv` -> conv decoder (oracle README §4.3). The stored codebook is not unit-norm;
every use normalises it. Trainable: `VQModel.forward` returns the reconstruction and the
quantiser's loss terms (straight-through gradients), as the official training loop expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.teachers import fast_decoder
from ardistill.teachers.llamagen.config import VQConfig


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=ch, eps=1e-6, affine=True)


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.dropout = nn.Dropout(dropout)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention, scale C^-0.5, separate 1x1 q/k/v/proj_out."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = _norm(c)
        self.q, self.k, self.v = (nn.Conv2d(c, c, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)  # (b, hw, c)
        k = self.k(h).reshape(b, c, hh * ww)  # (b, c, hw)
        w = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)  # (b, hw_q, hw_k)
        v = self.v(h).reshape(b, c, hh * ww)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad, then stride-2 conv


class Upsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(blocks: list[nn.Module], attns: list[nn.Module]) -> nn.Module:
    lvl = nn.Module()
    lvl.res = nn.ModuleList(blocks)
    lvl.attn = nn.ModuleList(attns)
    return lvl


def _mid(c: int, dropout: float) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(c, c, dropout), AttnBlock(c), ResnetBlock(c, c, dropout)])


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        ch, mult, n = cfg.ch, cfg.encoder_ch_mult, cfg.num_res_blocks
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, 1, 1)
        in_mult = (1,) + tuple(mult)  # level i starts at the previous level's width
        self.conv_blocks = nn.ModuleList()
        for i, m in enumerate(mult):
            c_in, c_out, last = ch * in_mult[i], ch * m, i == len(mult) - 1
            res = [ResnetBlock(c_in if j == 0 else c_out, c_out, cfg.dropout_p) for j in range(n)]
            lvl = _level(res, [AttnBlock(c_out) for _ in range(n)] if last else [])
            if not last:
                lvl.downsample = Downsample(c_out)
            self.conv_blocks.append(lvl)
        c = ch * mult[-1]
        self.mid = _mid(c, cfg.dropout_p)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, cfg.z_channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for lvl in self.conv_blocks:
            for j, res in enumerate(lvl.res):
                h = res(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        for m in self.mid:
            h = m(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        ch, mult, n = cfg.ch, cfg.decoder_ch_mult, cfg.num_res_blocks
        c = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c, 3, 1, 1)
        self.mid = _mid(c, cfg.dropout_p)
        # conv_blocks are stored from the lowest resolution up (reversed level order).
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(mult))):
            c_out, lowest = ch * mult[i], i == len(mult) - 1
            res = [ResnetBlock(c if j == 0 else c_out, c_out, cfg.dropout_p) for j in range(n + 1)]
            lvl = _level(res, [AttnBlock(c_out) for _ in range(n + 1)] if lowest else [])
            if i != 0:
                lvl.upsample = Upsample(c_out)
            self.conv_blocks.append(lvl)
            c = c_out
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for m in self.mid:
            h = m(h)
        for lvl in self.conv_blocks:
            for j, res in enumerate(lvl.res):
                h = res(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


@dataclass
class QuantizerOutput:
    """z_q: (B, C, h, w) codewords with straight-through gradients to z;
    indices: (B, h, w) int64; loss terms are 0-dim tensors (zero in eval mode):
    codebook_loss = |z_q - sg(z)|^2, commit_loss = beta |sg(z_q) - z|^2, entropy_loss."""

    z_q: Tensor
    indices: Tensor
    codebook_loss: Tensor
    commit_loss: Tensor
    entropy_loss: Tensor

    @property
    def loss(self) -> Tensor:
        return self.codebook_loss + self.commit_loss + self.entropy_loss


def entropy_loss(affinity: Tensor, temperature: float = 0.01) -> Tensor:
    """Per-sample entropy minus codebook-average entropy of softmax(affinity / T)."""
    logits = affinity.reshape(-1, affinity.shape[-1]) / temperature
    probs = torch.softmax(logits, dim=-1)
    log_probs = torch.log_softmax(logits + 1e-5, dim=-1)
    avg = probs.mean(dim=0)
    return -(probs * log_probs).sum(-1).mean() + (avg * torch.log(avg + 1e-5)).sum()


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)
        if cfg.codebook_show_usage:
            self.register_buffer("codebook_used", torch.zeros(cfg.usage_buffer_size))

    def codebook(self) -> Tensor:
        """(V, C) codebook as used: L2-normalised rows when `codebook_l2_norm`."""
        w = self.embedding.weight
        return F.normalize(w, p=2, dim=-1) if self.cfg.codebook_l2_norm else w

    def forward(self, z: Tensor) -> QuantizerOutput:
        """z: (B, C, h, w) encoder latents."""
        zz = z.permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
        emb = self.codebook()
        if self.cfg.codebook_l2_norm:
            zz = F.normalize(zz, p=2, dim=-1)
        flat = zz.view(-1, zz.shape[-1])
        d = (flat**2).sum(1, keepdim=True) + (emb**2).sum(1) - 2 * flat @ emb.t()
        idx = d.argmin(dim=1)
        z_q = emb[idx].view(zz.shape)
        zero = z.new_zeros(())
        cb, commit, ent = zero, zero, zero
        if self.training:
            cb = torch.mean((z_q - zz.detach()) ** 2)
            commit = self.cfg.commit_loss_beta * torch.mean((z_q.detach() - zz) ** 2)
            if self.cfg.entropy_loss_ratio > 0:
                ent = self.cfg.entropy_loss_ratio * entropy_loss(-d)
            self._record_usage(idx)
        z_q = zz + (z_q - zz).detach()  # straight-through estimator
        return QuantizerOutput(z_q.permute(0, 3, 1, 2), idx.view(zz.shape[:3]), cb, commit, ent)

    @torch.no_grad()
    def _record_usage(self, idx: Tensor) -> None:
        if not self.cfg.codebook_show_usage:
            return
        n = min(idx.numel(), self.codebook_used.numel())
        self.codebook_used.copy_(torch.cat([self.codebook_used[n:], idx[-n:].float()]))


class VQModel(nn.Module):
    """LlamaGen `VQModel`: images (B, 3, H, W) in [-1, 1] <-> tokens on an (H/16, W/16) grid."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)

    def encode_latents(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C, h, w) pre-quantisation latents (quant_conv(encoder(x)))."""
        return self.quant_conv(self.encoder(images))

    def encode(self, images: Tensor) -> QuantizerOutput:
        return self.quantize(self.encode_latents(images))

    def decode(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, 3, H, W), not clamped. Inference on the CPU in float32 runs the
        fast path (`teachers.fast_decoder`: same output up to float32 rounding)."""
        fast = fast_decoder.decode(self.decoder, self.post_quant_conv, latents)
        return fast if fast is not None else self.decoder(self.post_quant_conv(latents))

    def decode_code(self, indices: Tensor, grid: tuple[int, int]) -> Tensor:
        """indices: (B, h*w) int64 raster order -> (B, 3, H, W) images, not clamped."""
        b = indices.shape[0]
        z = self.quantize.codebook()[indices.reshape(b, -1)]  # (B, h*w, C)
        return self.decode(z.reshape(b, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous())

    def forward(self, images: Tensor) -> tuple[Tensor, QuantizerOutput]:
        """Training step: (reconstruction (B, 3, H, W), quantiser output with losses)."""
        q = self.encode(images)
        return self.decode(q.z_q), q
