"""Incremental next-scale decoding with a preallocated KV cache (official
`autoregressive_infer_cfg`, and `intermediate_sample` for the prefix quirk).

One session decodes one batch: B samples, run as one 2B batch (conditional half first, null
class second) when guidance is on (cfg_scale > 0), as B otherwise. Step s runs the pn_s^2
tokens of scale s through every block, writing their keys/values at [begin(s), end(s)) of
the cache, and attends to the cache up to end(s): exactly the block-causal mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.cache_pool import CachePool
from ardistill.teachers.var.model import VAR, KVCache
from ardistill.teachers.var.quant import MultiScaleQuantizer
from ardistill.teachers.var.sampling import cfg_ramp, guide, probs_from_logits

RunBlocks = Callable[..., Tensor]  # VAR.run_blocks or its torch.compile'd version


class VARSession:
    """A `DecodeSession` (teachers/base.py) for VAR. `step` is the next scale to generate.

    After the last push, `f_hat` (B, Cvae, P, P) float32 holds the final latent map.
    """

    def __init__(self, model: VAR, quant: MultiScaleQuantizer, labels: Tensor,
                 sampling: SamplingConfig, prefix: Tensor | None = None, *,
                 official_prefix_quirk: bool = False, run_blocks: RunBlocks | None = None,
                 pool: CachePool | None = None) -> None:
        cfg = model.cfg
        self.model, self.quant, self.sampling = model, quant, sampling
        self.num_scales, self.patch_nums = cfg.num_scales, cfg.patch_nums
        self.begins = [b for b, _ in cfg.begin_ends] + [cfg.seq_len]
        self.B = int(labels.shape[0])
        self.guided = sampling.cfg_scale != 0
        self._run = run_blocks or model.run_blocks
        w = model.word_embed.weight
        self.dtype, device = w.dtype, w.device
        with torch.no_grad():
            lab = labels.to(device)
            if self.guided:  # conditional half first, null class second (official CFG batch)
                lab = torch.cat((lab, torch.full_like(lab, cfg.num_classes)))
            self.cond = model.class_emb(lab)  # (B2, C)
            self.mods = model.modulations(self.cond)
            self.lvl_pos = model.lvl_pos()  # (1, L, C)
            B2 = lab.shape[0]
            # the caches: the teacher's last finished session's when the shape matches (its
            # stale values are never read: each scale writes its keys before attending)
            self._pool, self._pool_key = pool, (B2, cfg.depth, str(device), self.dtype)
            make = lambda: [KVCache(B2, cfg.heads, cfg.seq_len, cfg.head_dim, device,  # noqa: E731
                                    self.dtype) for _ in range(cfg.depth)]
            self.caches = pool.take(self._pool_key, make)[0] if pool else make()
            P = cfg.patch_nums[-1]
            self.f_hat = torch.zeros(self.B, cfg.cvae, P, P, device=device)
            self.x = model.sos(self.cond) + self.lvl_pos[:, : cfg.first_l]  # step-0 input
        self.step = 0
        self._logits: Tensor | None = None  # guided logits of `step`, once its pass has run
        self._probs: Tensor | None = None
        if prefix is not None and prefix.shape[1] > 0:
            with torch.no_grad():
                self._consume_prefix(prefix, official_prefix_quirk)

    # ---- the protocol ----
    def next_probs(self) -> Tensor:
        """(B, pn^2, V) float32 sampling distribution of the current scale's tokens."""
        if self._probs is None:
            self._probs = probs_from_logits(self.next_logits(), self.sampling)
        return self._probs

    def next_logits(self) -> Tensor:
        """(B, pn^2, V) float32 CFG-ramped logits of the current scale (before filtering)."""
        self._check_open()
        if self._logits is None:
            with torch.no_grad():
                h = self._run(self.x, self.mods, None, self.caches, self.begins[self.step])
                self._logits = self._guided(self.model.logits(h, self.cond))
        return self._logits

    def push(self, tokens: Tensor) -> None:
        """tokens: (B, pn^2) int64 of scale `step`; updates f_hat and the next input."""
        self._check_open()
        n = self.patch_nums[self.step] ** 2
        if tokens.shape != (self.B, n):
            raise ValueError(f"step {self.step} takes tokens of shape {(self.B, n)}, "
                             f"got {tuple(tokens.shape)}")
        if self._logits is None:  # the pass fills this scale's keys/values
            self.next_logits()
        with torch.no_grad():
            self._add_scale(self.step, tokens.to(self.f_hat.device).long())
        self.step += 1
        self._logits = self._probs = None
        if self.step == self.num_scales and self._pool is not None:  # finished
            self._pool.give_back(self._pool_key, self.caches)
            self._pool = None

    # ---- internals ----
    def _check_open(self) -> None:
        if self.step >= self.num_scales:
            raise ValueError(f"the session is finished (all {self.num_scales} scales pushed)")

    def _guided(self, logits: Tensor) -> Tensor:
        if not self.guided:
            return logits
        return guide(logits, self.B, cfg_ramp(self.step, self.num_scales, self.sampling.cfg_scale))

    def _add_scale(self, si: int, tokens: Tensor) -> None:
        """f_hat += Phi(up(codebook[tokens])); self.x = input of scale si + 1 (2B rows)."""
        nxt = self.quant.add_scale(si, self.f_hat, self.quant.scale_vectors(si, tokens))
        if nxt is None:
            return
        b, e = self.begins[si + 1], self.begins[si + 2]
        x = self.model.word_embed(nxt.flatten(2).transpose(1, 2).to(self.dtype))
        x = x + self.lvl_pos[:, b:e]
        self.x = x.repeat(2, 1, 1) if self.guided else x

    def _consume_prefix(self, prefix: Tensor, quirk: bool) -> None:
        """prefix: (B, begin(k)) int64, whole scales 0..k-1, in one pass.

        Correct (default): positions [0, begin(k)) with the block-causal bias; the session
        then runs scale k as usual. Quirk (official `intermediate_sample`): positions
        [0, begin(k+1)) -- the inputs of scales 0..k -- WITHOUT any bias, so earlier scales
        also attend to later ones; scale k's logits come from that same pass.
        """
        k = self.begins.index(prefix.shape[1]) if prefix.shape[1] in self.begins else -1
        if k <= 0 or prefix.shape[0] != self.B:
            raise ValueError(f"prefix must be (B={self.B}, begin(k)) with whole scales, one of "
                             f"{self.begins[1:]}; got {tuple(prefix.shape)}")
        if quirk and k >= self.num_scales:
            raise ValueError("official_prefix_quirk needs a prefix shorter than all scales")
        prefix = prefix.to(self.f_hat.device)
        inputs = [self.x]
        for si in range(k):
            self._add_scale(si, prefix[:, self.begins[si] : self.begins[si + 1]].long())
            if si + 1 < self.num_scales:
                inputs.append(self.x)
        self.step = k  # the ramp weight of the quirk's logits below is that of scale k
        if k < self.num_scales:
            x_all = torch.cat(inputs if quirk else inputs[:-1], dim=1)
            n = x_all.shape[1]
            bias = None if quirk else self.model.attn_bias_for_masking[:, :, :n, :n]
            h = self._run(x_all, self.mods, bias, self.caches, 0)
            if quirk:
                self._logits = self._guided(self.model.logits(h[:, self.begins[k] :], self.cond))
