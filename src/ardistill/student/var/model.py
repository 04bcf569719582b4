"""The DD student for VAR teachers (official `DD_Model`, VAR/models/dd.py, with
n_d_embed_enable=True and layerwise_n_d_embed=True: the released configuration).

The teacher's backbone with the DD changes (method.md §4, oracle README §5.2):
- the sequence is `[sos, x_1 .. x_L]`: DD patch_nums are `(1, *teacher patch_nums)`, level 0
  is the start token `class_emb(label) + pos_start`, level l >= 1 is teacher scale l - 1 and
  holds `word_embed(x)` of the continuous input vectors (noise or codebook vectors, NOT the
  f_hat-derived teacher-forcing inputs); every position adds `lvl_embed(level) + pos_1LC`;
- attention: a token sees sos, every earlier scale and itself (0 where level(q) >= level(k)
  + 1 or q == k, -inf elsewhere), so row i depends on the inputs of earlier scales and on x_i;
- `n_d_embed` (2, C): row 1 ("data") at sos and the positions before `begin(t)`, row 0
  ("noise") after; added at the input, then `layerwise_n_d_embed[i](n_d)` inside block i
  between the attention and the FFN residuals, and `layerwise_n_d_embed[depth](n_d)` after the
  last block, before both heads;
- heads on the class embedding `cond`: logits `head(head_nm(h, cond))` and the continuous
  `final_layer_conti(h, cond)`; output row i (after dropping sos) predicts token i;
- no classifier-free guidance and no label dropout (the guided distribution is in the data).

The blocks and the logits head are the teacher's modules (`ardistill.teachers.var.model`); the
teacher's block forward fuses its two residuals, so `_block` below runs the same modules with
the layerwise embedding added between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.student.base import StudentOutput
from ardistill.teachers.base import Condition, TokenLayout
from ardistill.teachers.fast_linear import FastLinear
from ardistill.teachers.var.config import VARConfig
from ardistill.teachers.var.model import AdaLNBeforeHead, AdaLNSelfAttn


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


@dataclass(frozen=True)
class VARStudentConfig:
    """var: the teacher's transformer config (width, depth, heads, V, Cvae, patch_nums).
    init_std: std of the weights `init_with_teacher` draws (official default 0.02)."""

    var: VARConfig
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.var.first_l != 1:
            raise ValueError(f"the DD student needs a teacher whose first scale is 1x1 (sos + "
                             f"1 token), got patch_nums {self.var.patch_nums}")

    @property
    def patch_nums(self) -> tuple[int, ...]:
        """DD patch_nums: (1, *teacher patch_nums); level 0 is the start token."""
        return (1, *self.var.patch_nums)

    @property
    def seq_len(self) -> int:
        return self.var.seq_len + 1

    @property
    def num_levels(self) -> int:
        return self.var.num_scales + 1

    def replace(self, **kw) -> VARStudentConfig:
        return replace(self, **kw)


def dd_level_buffers(patch_nums: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """DD patch_nums -> lvl_1L (1, L) int64 level of each position; attn_bias_for_masking
    (1, 1, L, L) float32: 0 where level(q) >= level(k) + 1 or q == k, else -inf."""
    d = torch.cat([torch.full((p * p,), i) for i, p in enumerate(patch_nums)])
    n = d.numel()
    see = (d[:, None] >= d[None, :] + 1) | torch.eye(n, dtype=torch.bool)
    bias = torch.where(see, 0.0, -torch.inf)
    return d.view(1, n), bias.view(1, 1, n, n)


class ContinuousHead(nn.Module):
    """`final_layer_conti` (PixArt-style FinalLayer): adaLN-modulated LayerNorm + Linear."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.dim = dim
        self.scale_shift_table = nn.Parameter(torch.zeros(2, dim))  # row 0 shift, row 1 scale
        self.linear = FastLinear(dim, out, bias=True)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        """h: (B, n, C); cond: (B, C) -> (B, n, out). dd.py FinalLayer: `shift, scale =
        (table[None] + cond[:, None]).chunk(2, dim=1)`, LayerNorm without affine, eps 1e-6."""
        shift, scale = (self.scale_shift_table[None] + cond[:, None]).unbind(1)  # (B, C) each
        hn = F.layer_norm(h, (self.dim,), eps=1e-6)
        return self.linear(torch.addcmul(shift[:, None], hn, 1 + scale[:, None]))


def _add_nd(h: Tensor, table: Tensor, nd: Tensor, n_data: int | None) -> Tensor:
    """h (B, 1 + L, C) + table[nd] ((2, C) table, nd (B, 1 + L) int64). With n_data (rows
    [0, n_data) data in every sample) in place on two slices; h must be a fresh result."""
    if n_data is None:
        return h + F.embedding(nd, table)
    h[:, :n_data] += table[1]
    h[:, n_data:] += table[0]
    return h


def _block(blk: AdaLNSelfAttn, x: Tensor, cond: Tensor, bias: Tensor, table: Tensor,
           nd: Tensor, n_data: int | None) -> Tensor:
    """One teacher block with the DD layerwise n/d embedding added between its attention and
    FFN residuals (dd.py: basic_var.AdaLNSelfAttn.forward with n_d_emb)."""
    g1, g2, s1, s2, b1, b2 = blk.modulation(cond)  # scales already shifted by 1
    ln = lambda t: F.layer_norm(t, (blk.dim,), eps=blk.eps)  # non-affine
    x = torch.addcmul(x, blk.attn(torch.addcmul(b1, ln(x), s1), bias), g1)
    x = _add_nd(x, table, nd, n_data)
    return torch.addcmul(x, blk.ffn(torch.addcmul(b2, ln(x), s2)), g2)


class VARStudent(nn.Module):
    """The VAR DD student (`Student` protocol), state-dict keys as the official `DD_Model`."""

    family = "var"

    def __init__(self, cfg: VARStudentConfig) -> None:
        super().__init__()
        v = cfg.var
        C = v.width
        self.config = cfg
        self.layout = TokenLayout.multiscale(v.patch_nums)
        self.vocab_size, self.codebook_dim, self.num_classes = v.vocab_size, v.cvae, v.num_classes
        # Registration order = the official state-dict order (keys/var_DD-*.json).
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, cfg.seq_len, C))
        lvl, bias = dd_level_buffers(cfg.patch_nums)
        self.register_buffer("lvl_1L", lvl)
        self.register_buffer("attn_bias_for_masking", bias)
        self.word_embed = nn.Linear(v.cvae, C)
        self.class_emb = nn.Embedding(v.num_classes + 1, C)
        self.lvl_embed = nn.Embedding(cfg.num_levels, C)
        self.blocks = nn.ModuleList(
            [AdaLNSelfAttn(C, v.heads, v.mlp_ratio, v.norm_eps) for _ in range(v.depth)]
        )
        self.head_nm = AdaLNBeforeHead(C, v.norm_eps)
        self.head = FastLinear(C, v.vocab_size)
        self.n_d_embed = nn.Embedding(2, C)
        self.layerwise_n_d_embed = nn.ModuleList([nn.Linear(C, C) for _ in range(v.depth + 1)])
        self.final_layer_conti = ContinuousHead(C, v.cvae)
        self._compiled = None
        self._nd_cache: tuple | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.word_embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.word_embed.weight.device

    def set_compile(self, enabled: bool) -> None:
        """Run the network (not the input checks) through `torch.compile`; shapes are left to
        dynamo's automatic dynamic mode (batch size and logits range vary between calls)."""
        self._compiled = torch.compile(self._trunk) if enabled else None

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x: Tensor, cond: Condition, t: Tensor,
                logits_range: tuple[int, int] | None = None) -> StudentOutput:
        """x: (B, L, Cvae) float, data vectors before `layout.begin(t)`, noise after;
        cond: class labels (B,) int64; t: (B,) int64 DD timesteps in scales, 0..K.

        logits_range: (lo, hi) computes the logits head only for positions lo..hi-1 (those
            the caller uses; None = all L).
        Returns StudentOutput(conti (B, L, Cvae) float32, logits (B, hi - lo, V) float32); row
            i of conti (row i - lo of logits) is the prediction for token i.
        """
        labels = self._check(x, cond, t)
        n = x.shape[1]
        lo, hi = (0, n) if logits_range is None else (int(logits_range[0]), int(logits_range[1]))
        if not 0 <= lo <= hi <= n:
            raise ValueError(f"logits_range must satisfy 0 <= lo <= hi <= {n}, got {(lo, hi)}")
        t = t.to(self.device)
        nd = self.noise_data_index(t)
        # One timestep for the whole batch (sampling): the data rows are a common prefix, and
        # the n/d embeddings are added to two slices in place instead of gathered per row.
        n_data = None
        if self._compiled is None and not _compiling() and t.numel() and bool((t == t[0]).all()):
            n_data = 1 + self.layout.begin(int(t[0]))
        run = self._compiled or self._trunk
        conti, logits = run(x.to(self.device), labels, nd, self.nd_tables(), n_data, lo, hi)
        return StudentOutput(conti, logits)

    def noise_data_index(self, t: Tensor) -> Tensor:
        """t: (B,) int64 -> (B, 1 + L) int64 rows of n_d_embed: 1 (data) at sos and at
        positions < begin(t), 0 (noise) after (dd.py `noise_idx = L - accum[t + 1]`)."""
        data = self.layout.data_mask(t, self.layout.num_positions)
        return torch.cat([torch.ones_like(data[:, :1]), data], dim=1).long()

    def nd_tables(self) -> Tensor:
        """(depth + 2, 2, C): row 0 the n_d_embed table, row i + 1 layerwise_n_d_embed[i] of
        it. dd.py applies each Linear to the (B, L, C) embedding; its rows take only these two
        values, so the Linear runs on the 2-row table and is gathered per position. Without
        autograd the tables are cached until a weight changes (tiny matmuls are slow on CPU)."""
        if torch.is_grad_enabled() or _compiling():
            return self._nd_tables()
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device)
                    for p in (self.n_d_embed.weight, *self.layerwise_n_d_embed.parameters()))
        if self._nd_cache is None or self._nd_cache[0] != key:
            self._nd_cache = (key, self._nd_tables())
        return self._nd_cache[1]

    def _nd_tables(self) -> Tensor:
        w = self.n_d_embed.weight
        return torch.stack([w] + [lin(w) for lin in self.layerwise_n_d_embed])

    def _trunk(self, x: Tensor, labels: Tensor, nd: Tensor, tables: Tensor, n_data: int | None,
               lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """The network. nd: (B, 1 + L) int64 n/d rows; tables: `nd_tables()`; n_data: the
        common number of data rows (sos included) when every sample has the same t, else None.
        Returns (conti (B, L, Cvae), logits (B, hi - lo, V)), both float32."""
        cond = self.class_emb(labels)  # (B, C), raw: no label dropout
        dtype = self.dtype
        h = torch.cat((cond[:, None] + self.pos_start, self.word_embed(x.to(dtype))), dim=1)
        h = h + (self.lvl_embed(self.lvl_1L) + self.pos_1LC)
        h = _add_nd(h, tables[0], nd, n_data)
        bias = self.attn_bias_for_masking.to(dtype)
        for i, blk in enumerate(self.blocks):
            h = _block(blk, h, cond, bias, tables[i + 1], nd, n_data)
        h = _add_nd(h, tables[-1], nd, n_data)
        logits = self.head(self.head_nm(h[:, 1 + lo : 1 + hi], cond)).float()
        conti = self.final_layer_conti(h[:, 1:], cond).float()
        return conti, logits

    def _check(self, x: Tensor, cond: Condition, t: Tensor) -> Tensor:
        n, d = self.layout.num_positions, self.codebook_dim
        if x.dim() != 3 or tuple(x.shape[1:]) != (n, d):
            raise ValueError(f"x must be (B, {n}, {d}), got {tuple(x.shape)}")
        b = x.shape[0]
        if tuple(t.shape) != (b,) or t.is_floating_point():
            raise ValueError(f"t must be ({b},) integer DD timesteps (scales), got "
                             f"{tuple(t.shape)} {t.dtype}")
        if cond.labels is None:
            raise ValueError("the VAR student is class-conditional: Condition(labels=...)")
        if len(cond) != b:
            raise ValueError(f"{len(cond)} conditions for a batch of {b}")
        labels = cond.labels.to(self.device, torch.long)
        if _compiling():  # value checks read tensors: they would break a compiled graph
            return labels
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > self.layout.num_steps):
            raise ValueError(f"t must be in [0, {self.layout.num_steps}], got {t.tolist()}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}] "
                             f"({self.num_classes} = null class), got {labels.tolist()[:8]}")
        return labels

    # -- init --------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute the constant buffers (in the checkpoints, never learned)."""
        lvl, bias = dd_level_buffers(self.config.patch_nums)
        self.lvl_1L.copy_(lvl)
        self.attn_bias_for_masking.copy_(bias)
        for blk in self.blocks:
            blk.attn.zero_k_bias.zero_()

    @torch.no_grad()
    def init_dd_weights(self, generator: torch.Generator | None = None) -> None:
        """Draw the weights a teacher does not have, as the official code does
        (`build_vae_dd` -> `init_weights(init_std=-1)`, `FinalLayer.__init__`,
        `init_with_teacher(init_std)`), and recompute the buffers:
        - layerwise_n_d_embed.*, final_layer_conti.linear: weights ~ trunc_normal(0,
          sqrt(1 / (3 C))), biases 0;
        - final_layer_conti.scale_shift_table ~ N(0, 1) / sqrt(C);
        - n_d_embed, pos_1LC[:, 1] (the new start-token row), lvl_embed[1] (the new level of
          the first teacher scale) ~ trunc_normal(0, init_std).
        The remaining weights are the teacher's (`build.init_from_teacher`)."""
        C = self.config.var.width
        auto = math.sqrt(1 / C / 3)
        tn = lambda w, std: nn.init.trunc_normal_(w, std=std, a=-2.0, b=2.0, generator=generator)
        for lin in [*self.layerwise_n_d_embed, self.final_layer_conti.linear]:
            tn(lin.weight, auto)
            lin.bias.zero_()
        table = self.final_layer_conti.scale_shift_table
        table.normal_(0.0, 1.0, generator=generator).div_(C**0.5)
        std = self.config.init_std if self.config.init_std >= 0 else auto
        tn(self.n_d_embed.weight, std)
        tn(self.pos_1LC[:, 1], std)
        tn(self.lvl_embed.weight[1], std)
        self.reset_buffers()
