"""`LlamaGenTeacher`: the LlamaGen GPT + VQ tokenizer behind the `Teacher` protocol."""

from __future__ import annotations

import torch
from torch import Tensor

from ardistill.teachers.base import Condition, SamplingConfig, TokenLayout
from ardistill.teachers.cache_pool import CachePool
from ardistill.teachers.fast_linear import set_cpu_packing
from ardistill.teachers.filtering import check_filter_args, filtered_probs
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.llamagen.session import LlamaGenSession, uses_cfg
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.utils.checkpoint import fingerprint


def caption_attention_mask(caption_mask: Tensor, seq_len: int) -> Tensor:
    """(B, T) bool valid caption tokens -> (B, 1, S, S) bool full-pass mask (dataset/t2i.py
    recipe): causal, columns of padded caption tokens zeroed, diagonal forced on."""
    b, t = caption_mask.shape
    dev = caption_mask.device
    row = torch.arange(seq_len, device=dev)[:, None]
    col = torch.arange(seq_len, device=dev)[None, :]
    key_ok = torch.ones(b, seq_len, dtype=torch.bool, device=dev)
    key_ok[:, :t] = caption_mask
    mask = (col <= row)[None] & key_ok[:, None, :]
    return (mask | (col == row)[None]).unsqueeze(1)


class LlamaGenTeacher:
    """A LlamaGen teacher (class- or text-conditional). Modules are put in eval mode.

    cpu_packing: use oneDNN-packed weights for float32 CPU inference (fast_linear.py).
    """

    family = "llamagen"

    def __init__(self, name: str, gpt: GPT, vq: VQModel, default_sampling: SamplingConfig,
                 *, cpu_packing: bool = True) -> None:
        cfg = gpt.config
        if vq.config.codebook_size != cfg.vocab_size:
            raise ValueError(f"{name}: GPT vocab {cfg.vocab_size} != VQ codebook "
                             f"{vq.config.codebook_size}")
        self.name, self.gpt, self.vq = name, gpt.eval(), vq.eval()
        self.layout = TokenLayout.raster(cfg.grid)
        self.vocab_size = cfg.vocab_size
        self.codebook_dim = vq.config.codebook_embed_dim
        self.num_classes = cfg.num_classes if cfg.model_type == "c2i" else 0
        self.image_size = cfg.grid * vq.config.downsample
        self.default_sampling = default_sampling
        self.cpu_packing = set_cpu_packing(gpt, cpu_packing)
        self._compiled = None
        self.kv_pool = CachePool()  # the last finished session's cache, for the next one

    @property
    def device(self) -> torch.device:
        return self.gpt.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.gpt.tok_embeddings.weight.dtype

    def fingerprint(self) -> str:
        return fingerprint(self.gpt, self.vq)

    # -- conditions -------------------------------------------------------------------------
    def _cond(self, cond: Condition) -> tuple[Tensor, Tensor | None]:
        """Validated (condition tensor on device, caption mask or None)."""
        cfg = self.gpt.config
        if cfg.model_type == "c2i":
            if cond.labels is None:
                raise ValueError(f"{self.name} is class-conditional: Condition(labels=...) needed")
            labels = cond.labels.to(self.device, torch.long)
            if labels.numel() and (labels.min() < 0 or labels.max() > cfg.num_classes):
                raise ValueError(f"labels must be in [0, {cfg.num_classes}] "
                                 f"({cfg.num_classes} = null class)")
            return labels, None
        if cond.caption is None:
            raise ValueError(f"{self.name} is text-conditional: Condition(caption=..., "
                             "caption_mask=...) needed")
        cap = cond.caption
        if cap.shape[1:] != (cfg.cls_token_num, cfg.caption_dim):
            raise ValueError(f"caption must be (B, {cfg.cls_token_num}, {cfg.caption_dim}), "
                             f"got {tuple(cap.shape)}")
        return cap.to(self.device, self.dtype), cond.caption_mask.to(self.device, torch.bool)

    def sample_conditions(self, n: int, generator: torch.Generator) -> Condition:
        """n class labels uniform in [0, num_classes) (class-conditional teachers only)."""
        if self.num_classes == 0:
            raise ValueError(f"{self.name} is text-conditional: conditions are caption "
                             "features (Condition(caption=..., caption_mask=...)), not sampled")
        return Condition(labels=torch.randint(0, self.num_classes, (n,), generator=generator))

    # -- teacher forcing --------------------------------------------------------------------
    def _full_pass(self, tokens: Tensor, cond_t: Tensor, cap_mask: Tensor | None) -> Tensor:
        tokens = tokens.to(self.device, torch.long)
        if tokens.shape[1] != self.layout.num_positions:
            raise ValueError(f"tokens must be (B, {self.layout.num_positions}), "
                             f"got {tuple(tokens.shape)}")
        mask = None
        if cap_mask is not None:
            mask = caption_attention_mask(cap_mask, cap_mask.shape[1] + tokens.shape[1] - 1)
        return self.gpt(tokens[:, :-1], cond_t, mask)

    @torch.no_grad()
    def forward_logits(self, tokens: Tensor, cond: Condition) -> Tensor:
        """(B, N) int64 -> (B, N, V) float32 conditional logits; row i predicts token i."""
        cond_t, cap_mask = self._cond(cond)
        return self._full_pass(tokens, cond_t, cap_mask)

    def forward_logits_train(self, tokens: Tensor, cond: Condition) -> Tensor:
        """`forward_logits` with gradients through the GPT (DD2's trainable copies)."""
        cond_t, cap_mask = self._cond(cond)
        return self._full_pass(tokens, cond_t, cap_mask)

    @torch.no_grad()
    def forward_logits_pair(self, tokens: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
        """(conditional, null-condition) logits, each (B, N, V) float32, computed in one 2B
        batch (conditional half first; t2i: same caption mask for both halves)."""
        cond_t, cap_mask = self._cond(cond)
        both = torch.cat([cond_t, self.gpt.null_condition(cond_t)])
        mask2 = None if cap_mask is None else torch.cat([cap_mask, cap_mask])
        out = self._full_pass(torch.cat([tokens, tokens]), both, mask2)
        b = tokens.shape[0]
        return out[:b], out[b:]

    def guided_logits(self, tokens: Tensor, cond: Condition, sampling: SamplingConfig) -> Tensor:
        """(B, N, V) float32 CFG-combined logits (conditional where CFG is off)."""
        if sampling.cfg_scale <= 1.0:
            return self.forward_logits(tokens, cond)
        c, u = self.forward_logits_pair(tokens, cond)
        guided = u + (c - u) * sampling.cfg_scale
        on = torch.tensor([uses_cfg(sampling, j) for j in range(tokens.shape[1])],
                          device=guided.device)
        return torch.where(on[None, :, None], guided, c)

    def guided_probs(self, tokens: Tensor, cond: Condition, sampling: SamplingConfig) -> Tensor:
        """(B, N, V) float32 sampling distributions, equal to the session's step by step."""
        check_filter_args(sampling.temperature, sampling.top_k, sampling.top_p)
        logits = self.guided_logits(tokens, cond, sampling)
        return filtered_probs(logits, sampling.temperature, sampling.top_k, sampling.top_p)

    # -- decoding ---------------------------------------------------------------------------
    def start(self, cond: Condition, sampling: SamplingConfig, prefix: Tensor | None = None,
              *, compile: bool = False) -> LlamaGenSession:
        """Begin decoding `len(cond)` images. prefix: (B, k) int64 first tokens (one prefill
        pass). compile: `torch.compile` the per-token step (compiled once per teacher)."""
        cond_t, cap_mask = self._cond(cond)
        if prefix is not None and prefix.shape[0] != cond_t.shape[0]:
            raise ValueError(f"prefix has {prefix.shape[0]} rows for {cond_t.shape[0]} conditions")
        if sampling.cfg_scale > 1.0:
            cond_t = torch.cat([cond_t, self.gpt.null_condition(cond_t)])
            cap_mask = None if cap_mask is None else torch.cat([cap_mask, cap_mask])
        run = self.gpt.run
        if compile:
            if self._compiled is None:
                self._compiled = torch.compile(self.gpt.run, dynamic=False)
            run = self._compiled
        return LlamaGenSession(self.gpt, cond_t, cap_mask, sampling, prefix, run, static=compile,
                               pool=self.kv_pool)

    def dd_codebook(self) -> Tensor:
        """(V, d) float32 L2-normalised codebook (the VQ's codewords as decoded)."""
        return self.vq.quantize.codebook().detach().float()

    @torch.no_grad()
    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """(B, N) int64 -> (B, 3, H, W) float32 in about [-1, 1], not clamped."""
        g = self.layout.grid
        return self.vq.decode_code(tokens.to(self.vq_device, torch.long), (g, g)).float()

    @torch.no_grad()
    def decode_latents(self, x: Tensor) -> Tensor:
        """(B, N, d) codebook-space vectors -> (B, 3, H, W) float32, not clamped."""
        b, n, d = x.shape
        g = self.layout.grid
        if n != g * g or d != self.codebook_dim:
            raise ValueError(f"latents must be (B, {g * g}, {self.codebook_dim}), "
                             f"got {tuple(x.shape)}")
        z = x.to(self.vq_device, self.vq_dtype).reshape(b, g, g, d).permute(0, 3, 1, 2)
        return self.vq.decode(z.contiguous()).float()

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B, N) int64 token ids (raster order)."""
        x = images.to(self.vq_device, self.vq_dtype)
        return self.vq.encode(x).indices.reshape(images.shape[0], -1)

    @property
    def vq_device(self) -> torch.device:
        return self.vq.post_quant_conv.weight.device

    @property
    def vq_dtype(self) -> torch.dtype:
        return self.vq.post_quant_conv.weight.dtype
