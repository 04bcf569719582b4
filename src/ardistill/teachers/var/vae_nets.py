"""Convolutional encoder and decoder of VAR's multi-scale VQVAE (the ldm "vq-f16" design).

Module names reproduce the official state-dict keys (`encoder.down.0.block.1.conv2.weight`,
`decoder.up.4.attn.2.qkv.weight`, ...). GroupNorm(32, eps 1e-6) and SiLU everywhere; self
attention at the lowest resolution only (`using_sa`) and in the middle (`using_mid_sa`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        # A 1x1 shortcut only where the width changes (no key otherwise).
        same = in_channels == out_channels
        self.nin_shortcut = nn.Identity() if same else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self attention with a fused 1x1 qkv conv, scale C^-1/2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)  # each (B, C, HW)
        # (B, 1, HW, C) per tensor: one head over the HW positions.
        q, k, v = (t.transpose(1, 2).unsqueeze(1) for t in (q, k, v))
        h = F.scaled_dot_product_attention(q, k, v, scale=C**-0.5)  # (B, 1, HW, C)
        h = h.squeeze(1).transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj_out(h)


def _attn(channels: int, enabled: bool) -> nn.Module:
    return AttnBlock(channels) if enabled else nn.Identity()


class Downsample2x(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        # Asymmetric zero pad (right, bottom) then a stride-2 conv, as the official model.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2x(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float, using_mid_sa: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = _attn(channels, using_mid_sa)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution: res blocks, each followed by attention where the level has it."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def run(self, h: Tensor) -> Tensor:
        for i, blk in enumerate(self.block):
            h = blk(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class Encoder(nn.Module):
    """(B, in_channels, H, W) image -> (B, z_channels, H / 2^(n-1), W / 2^(n-1))."""

    def __init__(self, *, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, dropout: float,
                 in_channels: int, z_channels: int, using_sa: bool, using_mid_sa: bool) -> None:
        super().__init__()
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for lvl in range(n):
            block_in, block_out = ch * in_mult[lvl], ch * ch_mult[lvl]
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if lvl == n - 1 and using_sa:
                    attns.append(AttnBlock(block_in))
            level = _Level(blocks, attns)
            if lvl != n - 1:
                level.downsample = Downsample2x(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in, dropout, using_mid_sa)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, in_channels, h * 2^(n-1), w * 2^(n-1)), unclamped."""

    def __init__(self, *, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, dropout: float,
                 in_channels: int, z_channels: int, using_sa: bool, using_mid_sa: bool) -> None:
        super().__init__()
        n = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = _Mid(block_in, dropout, using_mid_sa)
        levels: list[_Level] = []
        for lvl in reversed(range(n)):
            block_out = ch * ch_mult[lvl]
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if lvl == n - 1 and using_sa:
                    attns.append(AttnBlock(block_in))
            level = _Level(blocks, attns)
            if lvl != 0:
                level.upsample = Upsample2x(block_in)
            levels.insert(0, level)  # up[0] is the finest level, as in the official key order
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, in_channels, 3, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for lvl in reversed(range(len(self.up))):
            level = self.up[lvl]
            h = level.run(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
