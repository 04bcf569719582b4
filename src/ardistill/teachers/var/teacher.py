"""`VARTeacher`: VAR + its multi-scale VQVAE behind the `Teacher` protocol (teachers/base.py).

Token layout: scale-major, raster inside a scale; one AR step per scale. The codebook DD sees
is the raw (un-normalised) VQVAE embedding (method.md §1). The transformer runs in the dtype it
was built with (float32 or bfloat16); the VQVAE, f_hat and all probabilities stay float32.
The teacher keeps the VQVAE's convolution weights in channels_last memory format: oneDNN's
convolutions are ~12% faster so on CPU (measured: docs/teachers-var.md); values are unchanged
up to float32 summation order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ardistill.teachers.base import Condition, SamplingConfig, TokenLayout
from ardistill.teachers.cache_pool import CachePool
from ardistill.teachers.var.model import VAR
from ardistill.teachers.var.sampling import cfg_ramp, check_sampling, guide, probs_from_logits
from ardistill.teachers.var.session import VARSession
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.utils.checkpoint import fingerprint

START_OPTIONS = ("official_prefix_quirk",)


class VARTeacher:
    family = "var"

    def __init__(self, name: str, model: VAR, vqvae: VQVAE, default_sampling: SamplingConfig,
                 *, compile: bool = False) -> None:
        m, v = model.cfg, vqvae.cfg
        if (m.vocab_size, m.cvae, tuple(m.patch_nums)) != (v.vocab_size, v.z_channels,
                                                           tuple(v.patch_nums)):
            raise ValueError(
                f"VAR (V={m.vocab_size}, Cvae={m.cvae}, patch_nums={m.patch_nums}) does not fit "
                f"the VQVAE (V={v.vocab_size}, Cvae={v.z_channels}, patch_nums={v.patch_nums})"
            )
        self.name = name
        self.model, self.vqvae = model, vqvae.to(memory_format=torch.channels_last)
        self.layout = TokenLayout.multiscale(m.patch_nums)
        self.vocab_size = m.vocab_size
        self.codebook_dim = m.cvae
        self.num_classes = m.num_classes
        self.image_size = v.image_size
        self.default_sampling = default_sampling
        self.kv_pool = CachePool()  # the last finished session's caches, for the next one
        self.set_compile(compile)

    def set_compile(self, enabled: bool) -> None:
        """Run the transformer blocks through `torch.compile` in sessions. Shapes are left to
        dynamo's automatic dynamic mode: the 10 scales would otherwise be 10 static
        compilations, past dynamo's default recompile limit (8)."""
        self._run_blocks = torch.compile(self.model.run_blocks) if enabled else None

    @property
    def device(self) -> torch.device:
        return self.model.word_embed.weight.device

    def eval(self) -> VARTeacher:
        self.model.eval()
        self.vqvae.eval()
        return self

    # ---- identity and codebook ----
    def fingerprint(self) -> str:
        return fingerprint(self.model, self.vqvae)

    def dd_codebook(self) -> Tensor:
        """(V, Cvae) float32: the raw VQVAE codebook (VAR does not normalise it)."""
        return self.vqvae.quantize.embedding.weight.detach().float()

    # ---- sampling ----
    def start(self, cond: Condition, sampling: SamplingConfig, prefix: Tensor | None = None,
              **options) -> VARSession:
        """Begin decoding (KV cache inside). prefix: (B, layout.begin(k)) int64, whole scales.

        options: official_prefix_quirk=True runs the prefix as the official DD
        `intermediate_sample` does (one pass WITHOUT the block-causal bias, oracle README
        §5.2); default False: the correct block-causal pass, equal to teacher forcing.
        """
        unknown = set(options) - set(START_OPTIONS)
        if unknown:
            raise ValueError(f"unknown VAR start options {sorted(unknown)}; known: {START_OPTIONS}")
        check_sampling(sampling, self.vocab_size)
        labels = self._labels(cond)
        return VARSession(self.model, self.vqvae.quantize, labels, sampling, prefix,
                          official_prefix_quirk=bool(options.get("official_prefix_quirk", False)),
                          run_blocks=self._run_blocks, pool=self.kv_pool)

    def _labels(self, cond: Condition) -> Tensor:
        if cond.labels is None:
            raise ValueError("VAR is class-conditional: the Condition needs labels, not captions")
        lab = cond.labels
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) > self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}] "
                             f"({self.num_classes} = null class), got {lab.tolist()[:8]}")
        return lab.to(self.device).long()

    # ---- teacher forcing ----
    def forward_logits(self, tokens: Tensor, cond: Condition) -> Tensor:
        """(B, N) int64 -> (B, N, V) float32 unguided logits, N = begin(k) (whole scales);
        row i predicts token i from the condition and the scales before token i's scale."""
        labels = self._labels(cond)
        return self._tf_logits(tokens, labels)

    def forward_logits_train(self, tokens: Tensor, cond: Condition) -> Tensor:
        """`forward_logits` with gradients through the transformer (DD2's trainable copies)."""
        return self._tf_logits(tokens, self._labels(cond), grad=True)

    def _tf_logits(self, tokens: Tensor, labels: Tensor, grad: bool = False) -> Tensor:
        if tokens.shape[0] != labels.shape[0] and tokens.shape[0] * 2 != labels.shape[0]:
            raise ValueError(f"{tokens.shape[0]} token rows for {labels.shape[0]} labels")
        with torch.no_grad():
            scales = self.vqvae.split_scales(tokens.to(self.device).long())
            if not scales:
                raise ValueError("teacher forcing needs at least the first scale")
            x = self.vqvae.quantize.indices_to_var_input(scales)
            if labels.shape[0] != x.shape[0]:  # CFG batch: the same tokens for both halves
                x = x.repeat(2, 1, 1)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.model(labels, x)

    def guided_logits(self, tokens: Tensor, cond: Condition, sampling: SamplingConfig) -> Tensor:
        """(B, N) -> (B, N, V) float32 CFG-ramped logits (one 2B pass, conditional half first)."""
        check_sampling(sampling, self.vocab_size)
        labels = self._labels(cond)
        B = labels.shape[0]
        if sampling.cfg_scale == 0:
            return self._tf_logits(tokens, labels)
        both = torch.cat((labels, torch.full_like(labels, self.num_classes)))
        logits = self._tf_logits(tokens, both)
        out = torch.empty_like(logits[:B])
        K = self.layout.num_steps
        for si in range(K):
            sl = self.layout.step_slice(si)
            if sl.start >= tokens.shape[1]:
                break
            w = cfg_ramp(si, K, sampling.cfg_scale)
            out[:, sl] = guide(logits[:, sl], B, w)
        return out

    def guided_probs(self, tokens: Tensor, cond: Condition, sampling: SamplingConfig) -> Tensor:
        """(B, N) -> (B, N, V) float32 sampling distributions, equal scale by scale to what
        `start(cond, sampling).next_probs()` gives (up to float32 noise of the two paths)."""
        return probs_from_logits(self.guided_logits(tokens, cond, sampling), sampling)

    # ---- tokenizer ----
    def encode_images(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) float in [-1, 1] -> (B, L) int64 per-scale indices (img_to_idxBl)."""
        with torch.no_grad():
            return self.vqvae.encode(images.to(self.device).float())

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """(B, L) int64 -> (B, 3, H, W) float32 in [-1, 1] (clamped, official fhat_to_img)."""
        if tokens.dim() != 2 or tokens.shape[1] != self.layout.num_positions:
            raise ValueError(f"expected (B, {self.layout.num_positions}) tokens, "
                             f"got {tuple(tokens.shape)}")
        with torch.no_grad():
            return self.vqvae.decode_indices(tokens.to(self.device).long())

    def decode_latents(self, x: Tensor) -> Tensor:
        """(B, L, Cvae) per-scale codebook-space vectors -> (B, 3, H, W) in [-1, 1]: the
        official `transfer_BLCv_to_B3HW` without its final (x + 1) / 2."""
        with torch.no_grad():
            f_hat = self.vqvae.quantize.vectors_to_fhat(x.to(self.device).float())
            return self.vqvae.fhat_to_img(f_hat)

    def decode_fhat(self, f_hat: Tensor) -> Tensor:
        """(B, Cvae, P, P) -> (B, 3, H, W) in [-1, 1] (e.g. `session.f_hat` after the end)."""
        with torch.no_grad():
            return self.vqvae.fhat_to_img(f_hat.to(self.device).float())

    def sample_conditions(self, n: int, generator: torch.Generator) -> Condition:
        """n class labels drawn uniformly from [0, num_classes) with `generator`."""
        labels = torch.randint(0, self.num_classes, (n,), generator=generator,
                               device=generator.device)
        return Condition(labels=labels.to(self.device))
