"""Incremental LlamaGen decoding over a static KV cache (the `DecodeSession` protocol).

Official semantics (generate.py, oracle README §4.1-4.2):
- CFG iff `cfg_scale > 1`: one 2B batch, conditional half first, null half second;
  `logits = uncond + (cond - uncond) * cfg_scale`.
- cfg_interval: token 0 (the prefill) always uses CFG; token j >= 1 comes from decode step
  i = j - 1 and uses conditional logits only when `cfg_interval > -1 and i > cfg_interval`.
  Counted on absolute token indices, also after a prefix.
- t2i: padded caption columns are masked for every query, the diagonal is always allowed,
  and the null half uses the same caption mask as the conditional half.
- a prefix of k tokens is consumed in one prefill pass `[cond, t_0..t_{k-1}]` (DD's
  `intermediate_generate`); the session then starts at step k.

Speed: the cache, the attention mask and the position buffer are allocated once per session
and written in place (the cache is reused by the teacher's next session of the same shape,
`teachers.cache_pool`); once CFG is switched off by `cfg_interval` the null half is dropped.
The per-token step can be `torch.compile`d (static shapes: the cache is attended in full
under the mask).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.cache_pool import CachePool
from ardistill.teachers.filtering import check_filter_args, filtered_probs_
from ardistill.teachers.llamagen.gpt import GPT, KVCache


def uses_cfg(sampling: SamplingConfig, token_index: int) -> bool:
    """Whether token `token_index` is drawn from guided logits (generate.py semantics)."""
    if sampling.cfg_scale <= 1.0:
        return False
    return sampling.cfg_interval <= -1 or token_index - 1 <= sampling.cfg_interval


def prefill_mask(key_ok: Tensor, s: int) -> Tensor:
    """(R, max_len) bool valid keys -> (R, 1, s, max_len) bool: causal & valid, diagonal on."""
    max_len = key_ok.shape[1]
    row = torch.arange(s, device=key_ok.device)[:, None]
    col = torch.arange(max_len, device=key_ok.device)[None, :]
    mask = (col <= row)[None] & key_ok[:, None, :]
    return (mask | (col == row)[None]).unsqueeze(1)


class LlamaGenSession:
    """One batch of AR decoding. `step` is the index of the next token to generate."""

    def __init__(
        self,
        gpt: GPT,
        cond_in: Tensor,
        cond_mask: Tensor | None,
        sampling: SamplingConfig,
        prefix: Tensor | None,
        run: Callable[..., Tensor],
        static: bool = False,
        pool: CachePool | None = None,
    ) -> None:
        """cond_in: (R, ...) conditions, conditional half first when CFG is on;
        cond_mask: (R, T) bool caption validity (t2i) or None; prefix: (B, k) int64;
        run: `gpt.run` or its compiled version, used for the per-token steps; static: attend
        the whole cache under the mask (fixed shapes for torch.compile) instead of the
        written part only (faster in eager mode); pool: where the cache comes from and goes back
        to when the last token is pushed (None: a new one, dropped with the session)."""
        check_filter_args(sampling.temperature, sampling.top_k, sampling.top_p)
        cfg = gpt.config
        self.gpt, self.sampling, self._run, self._static = gpt, sampling, run, static
        self.cfg_on = sampling.cfg_scale > 1.0
        self.rows = cond_in.shape[0]
        self.batch = self.rows // 2 if self.cfg_on else self.rows
        self.num_tokens = cfg.block_size
        self.cond_tokens = cfg.cls_token_num
        w = gpt.tok_embeddings.weight
        dev = w.device
        max_len = self.cond_tokens + self.num_tokens
        self._pool, self._pool_key = pool, (self.rows, max_len, str(dev), w.dtype)
        # The static step attends every position (under the mask): values never written must
        # be finite (zeros, also in a kept cache). The eager steps and prefill read written
        # positions only: their cache is left uninitialised (no multi-GB zeroing up front).
        make = lambda: KVCache.allocate(cfg, self.rows, max_len, dev, w.dtype,  # noqa: E731
                                        zeroed=static)
        self.cache, kept = pool.take(self._pool_key, make) if pool else (make(), False)
        if kept and static:
            self.cache.k.zero_()
            self.cache.v.zero_()
        key_ok = torch.ones(self.rows, max_len, dtype=torch.bool, device=dev)
        if cond_mask is not None:
            key_ok[:, : self.cond_tokens] = cond_mask
        self.rope = gpt.rope(dev)
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)
        k = 0 if prefix is None else prefix.shape[1]
        if k >= self.num_tokens:
            raise ValueError(f"prefix of {k} tokens leaves nothing to generate "
                             f"({self.num_tokens} tokens per image)")
        self._logits = self._prefill(cond_in, key_ok, prefix)
        s = self.cond_tokens + k
        # Decode-time mask (R, 1, 1, max_len): written keys that are valid; grows in place.
        self._mask = (key_ok & (torch.arange(max_len, device=dev) < s)).view(self.rows, 1, 1, -1)
        self.step = k

    @torch.no_grad()
    def _prefill(self, cond_in: Tensor, key_ok: Tensor, prefix: Tensor | None) -> Tensor:
        h = self.gpt.embed_condition(cond_in)
        if prefix is not None:
            pre = prefix.to(h.device, torch.long)
            pre = torch.cat([pre, pre]) if self.cfg_on else pre
            h = torch.cat([h, self.gpt.tok_embeddings(pre)], dim=1)
        s = h.shape[1]
        mask = prefill_mask(key_ok, s)
        pos = torch.arange(s, device=h.device)
        if self._static:
            logits = self.gpt.run(h, self.rope[:s], mask, self.cache, pos)
        else:  # the s written positions only (the rest of the cache is uninitialised)
            logits = self.gpt.run(h, self.rope[:s], mask[..., :s], self.cache, pos, kv_len=s)
        return logits[:, -1].clone()  # (R, V) float32

    def next_probs(self) -> Tensor:
        """(B, 1, V) float32 sampling distribution of token `step` (guided, filtered)."""
        if self.step >= self.num_tokens:
            raise RuntimeError("the session is finished: every token has been generated")
        s, b = self.sampling, self.batch
        if uses_cfg(s, self.step):
            cond, uncond = self._logits[:b], self._logits[b : 2 * b]
            probs = torch.sub(cond, uncond).mul_(s.cfg_scale).add_(uncond)
        else:
            probs = self._logits[:b].clone()
        return filtered_probs_(probs, s.temperature, s.top_k, s.top_p).unsqueeze(1)

    @torch.no_grad()
    def push(self, tokens: Tensor) -> None:
        """tokens: (B, 1) int64 ids of token `step`; runs the next forward step."""
        if self.step >= self.num_tokens:
            raise RuntimeError("the session is finished: every token has been generated")
        if tokens.shape != (self.batch, 1):
            raise ValueError(f"push expects tokens of shape ({self.batch}, 1), "
                             f"got {tuple(tokens.shape)}")
        self.step += 1
        if self.step == self.num_tokens:
            if self._pool is not None:  # finished: the next session may take the cache
                self._pool.give_back(self._pool_key, self.cache)
                self._pool = None
            return
        rows = self.rows
        if self.cfg_on and not uses_cfg(self.sampling, self.step):
            rows = self.batch  # CFG is off from here on: the null half is never needed again
        p = self.cond_tokens + self.step - 1  # sequence position of the pushed token
        self._pos.fill_(p)
        self._mask[:, :, :, p] = True
        idx = tokens.to(self._pos.device, torch.long).view(-1)
        idx = torch.cat([idx, idx])[:rows] if self.cfg_on else idx
        h = self.gpt.tok_embeddings(idx.view(rows, 1))
        rope = self.rope.index_select(0, self._pos)  # tensor index: static shapes for compile
        if self._static:
            logits = self._run(h, rope, self._mask[:rows], self.cache, self._pos)
        else:
            mask = self._mask[:rows, :, :, : p + 1]
            logits = self._run(h, rope, mask, self.cache, self._pos, kv_len=p + 1)
        self._logits[:rows] = logits[:, -1]
