"""Tiny VAR teachers of the real classes, with random weights, for tests of every room.

`tiny_teacher()` draws weights at scales that make outputs informative (logit std of a few
units, AdaLN gates of order one): the official initialisation (gates 1e-5, head x 0.02) would
make every block nearly the identity and tests insensitive to bugs in attention or caching.
"""

from __future__ import annotations

import torch

from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.var.config import VARConfig, VQVAEConfig
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.weights import random_var, random_vqvae

TINY_PATCH_NUMS = (1, 2, 3, 4)  # 30 tokens, latent 4x4, images 8x8


def tiny_configs(num_classes: int = 10, vocab_size: int = 64, cvae: int = 8,
                 depth: int = 2) -> tuple[VARConfig, VQVAEConfig]:
    var = VARConfig(depth=depth, embed_dim=64, num_heads=4, num_classes=num_classes,
                    vocab_size=vocab_size, cvae=cvae, patch_nums=TINY_PATCH_NUMS)
    vae = VQVAEConfig(vocab_size=vocab_size, z_channels=cvae, ch=32, ch_mult=(1, 2),
                      num_res_blocks=1, patch_nums=TINY_PATCH_NUMS)
    return var, vae


def tiny_teacher(seed: int = 0, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, **config) -> VARTeacher:
    """A VARTeacher of `tiny_configs(**config)` with informative random weights."""
    var_cfg, vae_cfg = tiny_configs(**config)
    gen = torch.Generator().manual_seed(seed)
    model = random_var(var_cfg, gen, init_std=0.15, init_head=1.5, init_adaln=1.0,
                       init_adaln_gamma=1.0)
    with torch.no_grad():  # spread the per-head temperature around the ln 100 clamp
        for blk in model.blocks:
            blk.attn.scale_mul_1H11.uniform_(1.0, 5.2, generator=gen)
    vqvae = random_vqvae(vae_cfg, gen)
    with torch.no_grad():  # codewords of unit scale, so nearest-codeword searches are tie-free
        vqvae.quantize.embedding.weight.normal_(0.0, 1.0, generator=gen)
    model, vqvae = model.to(device=device, dtype=dtype), vqvae.to(device=device)
    sampling = SamplingConfig(cfg_scale=2.0, top_k=min(16, var_cfg.vocab_size), top_p=0.95)
    return VARTeacher(f"tiny-var-{seed}", model, vqvae, sampling)
