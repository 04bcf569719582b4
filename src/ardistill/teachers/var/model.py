"""The VAR transformer (official `models/var.py`, `models/basic_var.py`), shared_aln=False.

Sequence layout (oracle README §5.1): L = sum(pn^2) positions, scale-major. Position 0..first_l
holds `class_emb(label) + pos_start`; the positions of scale s >= 1 hold `word_embed` of the
area-resized f_hat after scale s-1. Every position adds `lvl_embed(level) + pos_1LC`. A query
at level l attends to levels <= l (block-causal additive bias). Row i of the logits predicts
token i. AdaLN: `ada_lin(cond)` -> (gamma1, gamma2, scale1, scale2, shift1, shift2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.teachers.fast_linear import FastLinear
from ardistill.teachers.var.config import VARConfig

# Official `torch.log(torch.tensor(100)).item()`: a float32 log, so the clamp is bit-equal.
MAX_SCALE_MUL = float(torch.log(torch.tensor(100.0)))


class KVCache:
    """Preallocated keys and values of one block: (B, H, L, head_dim) each."""

    def __init__(self, batch: int, heads: int, length: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.k = torch.empty(batch, heads, length, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)


class SelfAttention(nn.Module):
    """L2-normalised q/k attention; q scaled by exp(min(scale_mul, ln 100)); SDPA scale 1."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), math.log(4.0)))
        self.mat_qkv = FastLinear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim))  # keys have no bias
        self.proj = FastLinear(dim, dim)

    def forward(self, x: Tensor, attn_bias: Tensor | None, cache: KVCache | None = None,
                start: int = 0) -> Tensor:
        """x: (B, n, C). With `cache`, the n new keys/values are written at [start, start+n)
        and the queries attend to cache[:start+n]; `attn_bias` (1, 1, n, start+n) or None."""
        B, n, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = self.mat_qkv(x, bias).view(B, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, n, hd), strided views
        # L2-normalise q and k (F.normalize's eps) and fold exp(min(scale_mul, ln 100)) into
        # q's per-row factor: one pass over q and k instead of two.
        scale_mul = self.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp()
        q = q * (scale_mul / q.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        k_norm = k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if cache is None:
            k = k / k_norm
        else:  # write straight into the preallocated cache, then attend to its prefix
            end = start + n
            torch.div(k, k_norm, out=cache.k[:, :, start:end])
            cache.v[:, :, start:end] = v
            k, v = cache.k[:, :, :end], cache.v[:, :, :end]
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, n, C))


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = FastLinear(dim, hidden)
        self.fc2 = FastLinear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNSelfAttn(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.attn = SelfAttention(dim, heads)
        self.ffn = FFN(dim, round(dim * mlp_ratio))
        self.ada_lin = nn.Sequential(nn.SiLU(), FastLinear(dim, 6 * dim))

    def modulation(self, cond: Tensor) -> tuple[Tensor, ...]:
        """cond: (B, C) -> (gamma1, gamma2, 1 + scale1, 1 + scale2, shift1, shift2), each
        (B, 1, C): the official ada_lin chunk order, with the scales already shifted by 1."""
        g1, g2, s1, s2, b1, b2 = self.ada_lin(cond).view(-1, 1, 6, self.dim).unbind(2)
        return g1, g2, s1 + 1, s2 + 1, b1, b2

    def forward(self, x: Tensor, mod: tuple[Tensor, ...], attn_bias: Tensor | None,
                cache: KVCache | None = None, start: int = 0) -> Tensor:
        g1, g2, s1, s2, b1, b2 = mod
        ln = lambda t: F.layer_norm(t, (self.dim,), eps=self.eps)  # non-affine
        # x += attn(LN(x) (1 + scale1) + shift1) gamma1; x += ffn(LN(x) (1 + scale2) + shift2)
        # gamma2, each product-and-add fused in one addcmul.
        h = torch.addcmul(b1, ln(x), s1)
        x = torch.addcmul(x, self.attn(h, attn_bias, cache, start), g1)
        h = torch.addcmul(b2, ln(x), s2)
        return torch.addcmul(x, self.ffn(h), g2)


class AdaLNBeforeHead(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.dim).unbind(2)  # scale first
        return torch.addcmul(shift, F.layer_norm(h, (self.dim,), eps=self.eps), scale + 1)


class VAR(nn.Module):
    """State-dict keys exactly as the official checkpoints `var_d16.pth` ... `var_d30.pth`."""

    def __init__(self, cfg: VARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, L = cfg.width, cfg.seq_len
        self.pos_start = nn.Parameter(torch.zeros(1, cfg.first_l, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, L, C))
        lvl, bias = level_buffers(cfg)
        self.register_buffer("lvl_1L", lvl)
        self.register_buffer("attn_bias_for_masking", bias)
        self.word_embed = nn.Linear(cfg.cvae, C)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)  # row num_classes: CFG null class
        self.lvl_embed = nn.Embedding(cfg.num_scales, C)
        self.blocks = nn.ModuleList(
            [AdaLNSelfAttn(C, cfg.heads, cfg.mlp_ratio, cfg.norm_eps) for _ in range(cfg.depth)]
        )
        self.head_nm = AdaLNBeforeHead(C, cfg.norm_eps)
        self.head = FastLinear(C, cfg.vocab_size)

    # ---- pieces shared by teacher forcing and the KV-cache session ----
    def sos(self, cond: Tensor) -> Tensor:
        """cond: (B, C) class embeddings -> (B, first_l, C) start tokens (before lvl/pos)."""
        return cond.unsqueeze(1).expand(-1, self.cfg.first_l, -1) + self.pos_start

    def lvl_pos(self) -> Tensor:
        """(1, L, C): lvl_embed(level) + pos_1LC."""
        return self.lvl_embed(self.lvl_1L) + self.pos_1LC

    def modulations(self, cond: Tensor) -> list[tuple[Tensor, ...]]:
        return [b.modulation(cond) for b in self.blocks]

    def run_blocks(self, x: Tensor, mods: list[tuple[Tensor, ...]], attn_bias: Tensor | None,
                   caches: list[KVCache] | None = None, start: int = 0) -> Tensor:
        for i, blk in enumerate(self.blocks):
            x = blk(x, mods[i], attn_bias, None if caches is None else caches[i], start)
        return x

    def logits(self, h: Tensor, cond: Tensor) -> Tensor:
        """h: (B, n, C), cond: (B, C) -> (B, n, V) float32."""
        return self.head(self.head_nm(h, cond)).float()

    def forward(self, labels: Tensor, x_wo_first_l: Tensor) -> Tensor:
        """Teacher forcing with the block-causal bias (official `VAR.forward`, no label drop).

        labels: (B,) int64 in [0, num_classes] (num_classes = null class).
        x_wo_first_l: (B, N - first_l, Cvae) float teacher-forcing inputs
            (`MultiScaleQuantizer.indices_to_var_input`), N = begin(k) for some k >= 1.
        Returns (B, N, V) float32 logits; row i predicts token i.
        """
        N = self.cfg.first_l + x_wo_first_l.shape[1]
        cond = self.class_emb(labels)
        dtype = self.word_embed.weight.dtype
        x = torch.cat((self.sos(cond), self.word_embed(x_wo_first_l.to(dtype))), dim=1)
        x = x + (self.lvl_embed(self.lvl_1L[:, :N]) + self.pos_1LC[:, :N])
        h = self.run_blocks(x, self.modulations(cond), self.attn_bias_for_masking[:, :, :N, :N])
        return self.logits(h, cond)

    # ---- initialisation (random weights: benchmarks, training from scratch, tests) ----
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator, *, init_std: float = -1.0,
                     init_head: float = 0.02, init_adaln: float = 0.5,
                     init_adaln_gamma: float = 1e-5) -> None:
        """The official `VAR.init_weights` scheme with an explicit generator; also recomputes
        the buffers (after `to_empty`). init_std < 0: sqrt(1 / (3 C))."""
        C, depth = self.cfg.width, self.cfg.depth
        std = init_std if init_std >= 0 else (1 / C / 3) ** 0.5
        tn = lambda t: nn.init.trunc_normal_(t, std=std, a=-2.0, b=2.0, generator=generator)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                tn(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                tn(m.weight)
        tn(self.pos_start)
        tn(self.pos_1LC)
        self.head.weight.mul_(init_head)
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        for blk in self.blocks:
            blk.attn.proj.weight.div_(math.sqrt(2 * depth))
            blk.ffn.fc2.weight.div_(math.sqrt(2 * depth))
            blk.ada_lin[-1].weight[2 * C :].mul_(init_adaln)
            blk.ada_lin[-1].weight[: 2 * C].mul_(init_adaln_gamma)
            blk.attn.scale_mul_1H11.fill_(math.log(4.0))
            blk.attn.q_bias.zero_()
            blk.attn.v_bias.zero_()
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute the constant buffers (they are in the checkpoints, but never learned)."""
        lvl, bias = level_buffers(self.cfg)
        self.lvl_1L.copy_(lvl)
        self.attn_bias_for_masking.copy_(bias)
        for blk in self.blocks:
            blk.attn.zero_k_bias.zero_()


def level_buffers(cfg: VARConfig) -> tuple[Tensor, Tensor]:
    """lvl_1L: (1, L) int64 scale index of each position; attn_bias_for_masking:
    (1, 1, L, L) float32, 0 where level(query) >= level(key), else -inf."""
    d = torch.cat([torch.full((p * p,), i) for i, p in enumerate(cfg.patch_nums)])
    bias = torch.where(d[:, None] >= d[None, :], 0.0, -torch.inf)
    return d.view(1, -1), bias.view(1, 1, d.numel(), d.numel())


def drop_labels(labels: Tensor, rate: float, num_classes: int,
                generator: torch.Generator | None) -> Tensor:
    """Classifier-free-guidance training: replace each label by the null class with
    probability `rate` (the official forward does this inside; we leave it to the loop)."""
    u = torch.rand(labels.shape, generator=generator, device=labels.device)
    return torch.where(u < rate, torch.full_like(labels, num_classes), labels)
