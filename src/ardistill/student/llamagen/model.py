"""The DD student for LlamaGen teachers (official `DDTransformer`, autoregressive/models/dd.py).

The teacher's backbone with the DD changes (method.md §4, oracle README §4.4):
- input: continuous codebook-space vectors `x (B, N, d)` through `tok_embeddings`, a
  `Linear(d, dim)` with bias, instead of the token table;
- `n_d_embed` (2, dim), added once at the input: row 1 ("data") on the condition slots and the
  positions before `begin(t)`, row 0 ("noise") after;
- a full causal pass over `[condition rows (T), x_0 .. x_{N-1}]`; output row `T + i` is the
  prediction FOR token i (no shift);
- two heads: the teacher's `norm` + `output` (logits), and `final_layer_conti` on the un-normed
  hidden state: `linear(LayerNorm_noaffine(h) * (1 + scale) + shift)` with
  `(shift, scale) = scale_shift_table + condition embedding`.

The blocks, norms, embedders and RoPE are the teacher's own (`ardistill.teachers.llamagen.gpt`).
Text conditions (the official code stops at c2i: "DD does not support t2i"), our choices:
the caption rows are all "data" in `n_d_embed`; the caption padding mask is the teacher's
(`caption_attention_mask`); the continuous head is modulated by the mean of the projected
VALID caption rows (the official head adds a (B, T, dim) embedding to a (2, dim) table, which
only broadcasts for T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ardistill.student.base import StudentOutput
from ardistill.teachers.base import Condition, TokenLayout
from ardistill.teachers.fast_linear import FastLinear
from ardistill.teachers.llamagen.config import GPTConfig
from ardistill.teachers.llamagen.gpt import (
    CaptionEmbedder,
    LabelEmbedder,
    RMSNorm,
    TransformerBlock,
    precompute_rope_2d,
)
from ardistill.teachers.llamagen.teacher import caption_attention_mask


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


# dd.py ModelArgs: no dropout anywhere and no label dropout (the guided distribution is baked
# into the training data, method.md §4).
_NO_DROPOUT = dict(token_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0,
                   ffn_dropout_p=0.0, drop_path_rate=0.0, class_dropout_prob=0.0)


@dataclass(frozen=True)
class LlamaGenStudentConfig:
    """gpt: the backbone (the teacher's `GPTConfig`; `from_teacher` zeroes the dropouts as
    dd.py does). codebook_dim: d, the VQ codebook dimension (8 for VQ-16).
    init_std: std of the new Linear / Embedding weights (dd.py `initializer_range`)."""

    gpt: GPTConfig
    codebook_dim: int = 8
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be >= 1, got {self.codebook_dim}")

    @staticmethod
    def from_teacher(gpt: GPTConfig, codebook_dim: int, **gpt_overrides) -> LlamaGenStudentConfig:
        """The student of a teacher with this config (dropouts zeroed unless overridden)."""
        return LlamaGenStudentConfig(gpt.replace(**{**_NO_DROPOUT, **gpt_overrides}), codebook_dim)

    @staticmethod
    def from_official(args: dict) -> LlamaGenStudentConfig:
        """From an official dd.py `ModelArgs` dict (`codebook_dim` included, `codebook`
        ignored: the codebook is not a weight of the student)."""
        args = dict(args)
        d = int(args.pop("codebook_dim", 8))
        args.pop("codebook", None)
        full = {**_NO_DROPOUT, **args}  # dd.py's defaults, where the dict is silent
        return LlamaGenStudentConfig(GPTConfig.from_official(full), d)

    def replace(self, **kw) -> LlamaGenStudentConfig:
        return replace(self, **kw)


class ContinuousHead(nn.Module):
    """`final_layer_conti` (PixArt-style final layer): adaLN-modulated LayerNorm + Linear."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.zeros(2, dim))  # row 0 shift, row 1 scale
        self.linear = FastLinear(dim, out, bias=True)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        """h: (B, S, dim) un-normed hidden states; cond: (B, 1, dim) -> (B, S, out)."""
        shift, scale = (self.scale_shift_table[None] + cond).chunk(2, dim=1)  # (B, 1, dim) each
        return self.linear(self.norm_final(h) * (1 + scale) + shift)


class LlamaGenStudent(nn.Module):
    """The DD student (`Student` protocol) with the official `DDTransformer` parameter names."""

    family = "llamagen"

    def __init__(self, cfg: LlamaGenStudentConfig) -> None:
        super().__init__()
        g = cfg.gpt
        self.config = cfg
        self.layout = TokenLayout.raster(g.grid)
        self.vocab_size = g.vocab_size
        self.codebook_dim = cfg.codebook_dim
        self.cond_tokens = g.cls_token_num
        if g.model_type == "c2i":
            self.cls_embedding = LabelEmbedder(g)
            # dd.py's LabelEmbedder always has the null row, whatever the label dropout.
            self.cls_embedding.embedding_table = nn.Embedding(g.num_classes + 1, g.dim)
        else:
            self.cls_embedding = CaptionEmbedder(g)
        self.tok_embeddings = FastLinear(cfg.codebook_dim, g.dim, bias=True)
        self.tok_dropout = nn.Dropout(g.token_dropout_p)
        rates = torch.linspace(0, g.drop_path_rate, g.n_layer, device="cpu").tolist()
        self.layers = nn.ModuleList(TransformerBlock(g, r) for r in rates)
        self.norm = RMSNorm(g.dim, g.norm_eps)
        self.output = FastLinear(g.dim, g.vocab_size, bias=False)
        self.final_layer_conti = ContinuousHead(g.dim, cfg.codebook_dim)
        self.n_d_embed = nn.Embedding(2, g.dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    def rope(self, device: torch.device) -> Tensor:
        """(T + N, hd/2, 2) float32 2-D RoPE table, zero rows for the condition slots. Built
        per call (under 1 ms on one CPU thread): no state for torch.compile to guard on."""
        g = self.config.gpt
        return precompute_rope_2d(g.grid, g.head_dim, g.rope_base, g.cls_token_num).to(device)

    # -- inputs ------------------------------------------------------------------------------
    def _check(self, x: Tensor, cond: Condition, t: Tensor) -> None:
        n, d = self.layout.num_positions, self.codebook_dim
        if x.dim() != 3 or x.shape[1:] != (n, d):
            raise ValueError(f"x must be (B, {n}, {d}), got {tuple(x.shape)}")
        b = x.shape[0]
        if t.shape != (b,) or t.is_floating_point():
            raise ValueError(f"t must be ({b},) integer DD timesteps, got {tuple(t.shape)} "
                             f"{t.dtype}")
        if len(cond) != b:
            raise ValueError(f"{len(cond)} conditions for a batch of {b}")
        if _compiling():  # value checks read tensors: they would break a compiled graph
            return
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > self.layout.num_steps):
            raise ValueError(f"t must be in [0, {self.layout.num_steps}], got {t.tolist()}")
        labels = cond.labels
        if labels is not None and labels.numel() and (
                int(labels.min()) < 0 or int(labels.max()) > self.config.gpt.num_classes):
            raise ValueError(f"labels must be in [0, {self.config.gpt.num_classes}] "
                             f"({self.config.gpt.num_classes} = null class)")

    def embed_condition(self, cond: Condition) -> tuple[Tensor, Tensor | None]:
        """-> (condition rows (B, T, dim), caption mask (B, T) bool or None)."""
        g = self.config.gpt
        if g.model_type == "c2i":
            if cond.labels is None:
                raise ValueError("this student is class-conditional: Condition(labels=...)")
            return self.cls_embedding(cond.labels.to(self.device, torch.long)), None
        if cond.caption is None:
            raise ValueError("this student is text-conditional: Condition(caption=..., "
                             "caption_mask=...)")
        if cond.caption.shape[1:] != (g.cls_token_num, g.caption_dim):
            raise ValueError(f"caption must be (B, {g.cls_token_num}, {g.caption_dim}), "
                             f"got {tuple(cond.caption.shape)}")
        cap = cond.caption.to(self.device, self.dtype)
        return self.cls_embedding(cap), cond.caption_mask.to(self.device, torch.bool)

    @staticmethod
    def head_condition(cond_rows: Tensor, cap_mask: Tensor | None) -> Tensor:
        """(B, T, dim) condition rows -> (B, 1, dim) modulation of the continuous head: the
        class row (c2i, dd.py), the mean of the valid caption rows (t2i, our choice)."""
        if cap_mask is None:
            return cond_rows
        m = cap_mask[..., None].to(cond_rows.dtype)
        return (cond_rows * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x: Tensor, cond: Condition, t: Tensor,
                logits_range: tuple[int, int] | None = None) -> StudentOutput:
        """x: (B, N, d) float, data before `layout.begin(t)`, noise after; t: (B,) int64.

        logits_range: (lo, hi) computes the logits head only for positions lo..hi-1 (the
            positions whose logits the caller uses; None = all N).
        Returns StudentOutput(conti (B, N, d) float32, logits (B, hi - lo, V) float32); row i
        of conti (row i - lo of logits) is the prediction for token i.
        """
        self._check(x, cond, t)
        n = x.shape[1]
        lo, hi = (0, n) if logits_range is None else (int(logits_range[0]), int(logits_range[1]))
        if not 0 <= lo <= hi <= n:
            raise ValueError(f"logits_range must satisfy 0 <= lo <= hi <= {n}, got {(lo, hi)}")
        cond_rows, cap_mask = self.embed_condition(cond)
        tt = self.cond_tokens
        h = torch.cat([cond_rows, self.tok_embeddings(x.to(self.dtype))], dim=1)
        # n_d_embed once at the input: condition slots and positions < begin(t) are data (1).
        data = self.layout.data_mask(t.to(h.device), n)
        nd = torch.cat([torch.ones_like(data[:, :1]).expand(-1, tt), data], dim=1)
        h = self.tok_dropout(h + self.n_d_embed(nd.long()))
        rope = self.rope(h.device)[: tt + n]
        mask = None if cap_mask is None else caption_attention_mask(cap_mask, tt + n)
        for layer in self.layers:
            h = layer(h, rope, mask)
        logits = self.output(self.norm(h[:, tt + lo : tt + hi])).float()
        conti = self.final_layer_conti(h[:, tt:], self.head_condition(cond_rows, cap_mask))
        return StudentOutput(conti.float(), logits)

    # -- init --------------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """dd.py `initialize_weights` + `FinalLayer.__init__`: Linear and Embedding weights
        ~ N(0, init_std), biases 0, `output` zeroed, norms 1, `scale_shift_table`
        ~ N(0, 1) / sqrt(dim); t2i null caption ~ N(0, 1) / sqrt(caption_dim)."""
        std = self.config.init_std
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std, generator=generator)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)
            elif isinstance(m, CaptionEmbedder):
                d = m.uncond_embedding.shape[1]
                m.uncond_embedding.normal_(0.0, d**-0.5, generator=generator)
        self.output.weight.zero_()
        table = self.final_layer_conti.scale_shift_table
        table.normal_(0.0, table.shape[1] ** -0.5, generator=generator)
