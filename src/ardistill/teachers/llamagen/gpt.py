"""The LlamaGen GPT (class- and text-conditional), with the official parameter names.

Sequence: `[condition rows (T), tok_emb(t_0), ..., tok_emb(t_{L-1})]`; the output at sequence
position `T - 1 + j` holds the logits for token j (oracle README §4.1-4.2). Llama blocks:
pre-RMSNorm (float32), attention with 2-D RoPE whose condition rows are zero, SwiGLU FFN.

Two ways to run it, sharing every layer:
- `GPT.forward(idx, cond)`: the cache-free full pass (training, teacher forcing);
- `GPT.run(h, rope, mask, cache, pos)`: the same blocks over a static KV cache (decode
  sessions, `teachers/llamagen/session.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.teachers.fast_linear import FastLinear
from ardistill.teachers.llamagen.config import GPTConfig


def precompute_rope_2d(grid: int, head_dim: int, base: float, cond_tokens: int) -> Tensor:
    """(cond_tokens + grid*grid, head_dim // 2, 2) float32 (cos, sin) table.

    Condition rows are zeros (cos = sin = 0), so their q and k become exactly 0. The first
    head_dim // 4 pairs rotate with the grid row, the last head_dim // 4 with the column.
    """
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    ang = torch.outer(torch.arange(grid, dtype=torch.float32), freqs)  # (grid, hd/4)
    ang2d = torch.cat(
        [ang[:, None, :].expand(-1, grid, -1), ang[None, :, :].expand(grid, -1, -1)], dim=-1
    )  # (grid, grid, hd/2): row angles then column angles
    table = torch.stack([ang2d.cos(), ang2d.sin()], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(cond_tokens, half, 2), table])


def apply_rope(x: Tensor, rope: Tensor) -> Tensor:
    """x: (B, S, H, hd); rope: (S, hd/2, 2) float32. Interleaved pairs (x[2i], x[2i+1]),
    rotated in float32 and cast back to x's dtype."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    r = rope.view(1, xs.shape[1], 1, xs.shape[3], 2)
    out = torch.stack(
        [
            xs[..., 0] * r[..., 0] - xs[..., 1] * r[..., 1],
            xs[..., 1] * r[..., 0] + xs[..., 0] * r[..., 1],
        ],
        dim=-1,
    )
    return out.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()  # official: normalise in float32, cast back, then scale
        xf = xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.w1 = FastLinear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w3 = FastLinear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = FastLinear(cfg.ffn_hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


@dataclass
class KVCache:
    """Static per-layer caches. k, v: (n_layer, R, n_kv_head, max_len, head_dim)."""

    k: Tensor
    v: Tensor

    @staticmethod
    def allocate(cfg: GPTConfig, rows: int, max_len: int, device, dtype,
                 zeroed: bool = True) -> KVCache:
        """zeroed=False: uninitialised memory, for users that read written positions only
        (eager decoding, `kv_len`): the pages of a multi-GB cache are then touched as positions
        are written instead of all at once (a LlamaGen-B cache at batch 256 with CFG is 9.7 GB;
        zeroing it took 15-35 s of page faults on the development VM)."""
        shape = (cfg.n_layer, rows, cfg.kv_heads, max_len, cfg.head_dim)
        new = torch.zeros if zeroed else torch.empty
        return KVCache(new(shape, device=device, dtype=dtype),
                       new(shape, device=device, dtype=dtype))


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        # wqkv rows: [q (n_head*hd) | k (n_kv*hd) | v (n_kv*hd)]
        self.wqkv = FastLinear(cfg.dim, (cfg.n_head + 2 * self.n_kv) * cfg.head_dim, bias=False)
        self.wo = FastLinear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)

    def forward(
        self,
        x: Tensor,
        rope: Tensor,
        mask: Tensor | None = None,
        kv: tuple[Tensor, Tensor] | None = None,
        pos: Tensor | None = None,
        kv_len: int | None = None,
    ) -> Tensor:
        """x: (B, S, dim); rope: (S, hd/2, 2); mask: bool (B|1, 1, S, K) True = attend, None =
        causal. kv: this layer's caches (B, n_kv, max_len, hd), written at `pos` (S,) int64,
        then attended over their first `kv_len` positions (all when None); K must match."""
        b, s, _ = x.shape
        kv_size = self.n_kv * self.head_dim
        q, k, v = self.wqkv(x).split([self.n_head * self.head_dim, kv_size, kv_size], dim=-1)
        q = apply_rope(q.view(b, s, self.n_head, self.head_dim), rope).transpose(1, 2)
        k = apply_rope(k.view(b, s, self.n_kv, self.head_dim), rope).transpose(1, 2)
        v = v.view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        if kv is not None:
            kv[0].index_copy_(2, pos, k)
            kv[1].index_copy_(2, pos, v)
            k, v = kv if kv_len is None else (kv[0][:, :, :kv_len], kv[1][:, :, :kv_len])
        if self.n_kv != self.n_head:  # GQA: query head h uses kv head h // group
            k = k.repeat_interleave(self.n_head // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv, dim=1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None,
            dropout_p=self.attn_dropout_p if self.training else 0.0,
        )
        out = out.transpose(1, 2).reshape(b, s, self.n_head * self.head_dim)
        return self.resid_dropout(self.wo(out))


class DropPath(nn.Module):
    """Stochastic depth (training only); identity when rate is 0 or in eval mode."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.rate)
        return x * keep / (1 - self.rate)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, drop_path: float) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, rope, mask=None, kv=None, pos=None, kv_len=None) -> Tensor:
        attn = self.attention(self.attention_norm(x), rope, mask, kv, pos, kv_len)
        h = x + self.drop_path(attn)
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))


class LabelEmbedder(nn.Module):
    """Class label -> one condition row. Row `num_classes` is the CFG null class."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.embedding_table = nn.Embedding(cfg.num_cond_rows, cfg.dim)

    def null(self, labels: Tensor) -> Tensor:
        return torch.full_like(labels, self.num_classes)

    def forward(self, labels: Tensor, drop: Tensor | None = None) -> Tensor:
        """labels: (B,) int64; drop: (B,) bool -> null class. Returns (B, 1, dim)."""
        if drop is not None:
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels).unsqueeze(1)


class CaptionMLP(nn.Module):
    def __init__(self, d_in: int, d: int) -> None:
        super().__init__()
        self.fc1 = FastLinear(d_in, d, bias=False)
        self.fc2 = FastLinear(d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CaptionEmbedder(nn.Module):
    """Caption features (B, T, caption_dim) -> (B, T, dim). The null caption is a fixed
    (caption_token_num, caption_dim) buffer, as in the official checkpoints."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cap_proj = CaptionMLP(cfg.caption_dim, cfg.dim)
        null = torch.zeros(cfg.caption_token_num, cfg.caption_dim)
        self.register_buffer("uncond_embedding", null)

    def null(self, caption: Tensor) -> Tensor:
        t = caption.shape[1]
        if t > self.uncond_embedding.shape[0]:
            raise ValueError(f"caption has {t} tokens, the null caption only "
                             f"{self.uncond_embedding.shape[0]}")
        return torch.zeros_like(caption) + self.uncond_embedding[:t].to(caption.dtype)

    def forward(self, caption: Tensor, drop: Tensor | None = None) -> Tensor:
        if drop is not None:
            caption = torch.where(drop[:, None, None], self.null(caption), caption)
        return self.cap_proj(caption)


class GPT(nn.Module):
    """LlamaGen `Transformer` (parameter names as in the official state dicts)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.cls_embedding = LabelEmbedder(cfg) if cfg.model_type == "c2i" else CaptionEmbedder(cfg)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.n_layer, device="cpu").tolist()
        self.layers = nn.ModuleList(TransformerBlock(cfg, r) for r in rates)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = FastLinear(cfg.dim, cfg.vocab_size, bias=False)

    @property
    def cond_tokens(self) -> int:
        return self.config.cls_token_num

    def rope(self, device: torch.device | str) -> Tensor:
        """(T + block_size, hd/2, 2) float32 RoPE table for this model."""
        c = self.config
        return precompute_rope_2d(c.grid, c.head_dim, c.rope_base, c.cls_token_num).to(device)

    def embed_condition(self, cond: Tensor, drop: Tensor | None = None) -> Tensor:
        """cond: (B,) int64 labels (c2i) or (B, T, caption_dim) captions (t2i); drop: (B,) bool
        rows replaced by the null condition (label dropout for CFG training; the caller draws
        it with its own generator). Returns (B, T, dim)."""
        return self.cls_embedding(cond, drop)[:, : self.cond_tokens]

    def null_condition(self, cond: Tensor) -> Tensor:
        """The CFG null condition shaped like `cond` (null class / zeros + uncond caption)."""
        return self.cls_embedding.null(cond)

    def run(self, h: Tensor, rope: Tensor, mask: Tensor | None = None,
            cache: KVCache | None = None, pos: Tensor | None = None,
            kv_len: int | None = None) -> Tensor:
        """Blocks + final norm + head. h: (B, S, dim) input embeddings; returns (B, S, V)
        float32 logits. `cache` rows beyond B are left untouched (cache[:B] is used);
        kv_len: attend only the first kv_len cached positions (eager decoding)."""
        rows = h.shape[0]
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache.k[i, :rows], cache.v[i, :rows])
            h = layer(h, rope, mask, kv, pos, kv_len)
        return self.output(self.norm(h)).float()

    def forward(self, idx: Tensor, cond: Tensor, mask: Tensor | None = None,
                cond_drop: Tensor | None = None) -> Tensor:
        """Cache-free full pass (training / teacher forcing).

        idx: (B, L) int64 input tokens (usually `tokens[:, :-1]`); cond: see `embed_condition`;
        mask: bool (B, 1, T+L, T+L), True = may attend (t2i caption padding; None = causal).
        Returns (B, L + 1, V) float32: row j holds the logits for token j.
        """
        h = torch.cat([self.embed_condition(cond, cond_drop), self.tok_embeddings(idx)], dim=1)
        h = self.tok_dropout(h)
        rope = self.rope(h.device)[: h.shape[1]]
        return self.run(h, rope, mask)[:, self.cond_tokens - 1 :]

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None, zero_output: bool = True,
                     std: float = 0.02) -> None:
        """Official init: Linear / Embedding ~ N(0, std), output zeroed (unless `zero_output`
        is False: benchmarks want non-degenerate logits), norms 1, null caption
        ~ N(0, 1/caption_dim)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std, generator=generator)
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)
            elif isinstance(m, CaptionEmbedder):
                d = m.uncond_embedding.shape[1]
                m.uncond_embedding.normal_(0.0, d**-0.5, generator=generator)
        if zero_output:
            self.output.weight.zero_()
