"""Tiny real teachers of both families for the pairs tests (random, informative weights).

Importable by name from spawned processes and subprocesses (tests/pairs is on their path):
`load_tiny(spec, tokenizer_ckpt, device, dtype)` is a `pairs.cli.TeacherLoader` for the specs
"tiny-llamagen" (c2i, 4x4 = 16 tokens, V 256 x 8), "tiny-t2i" (caption features, 4x4 tokens)
and "tiny-var" (`teachers.var.tiny`, scales 1-4 = 30 tokens, V 64 x 8).
"""

from __future__ import annotations

import functools

import torch

from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import random_gpt, random_vq
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher
from ardistill.teachers.var.tiny import tiny_teacher

TINY_VQ = VQConfig(codebook_size=256, codebook_embed_dim=8, encoder_ch_mult=(1, 1),
                   decoder_ch_mult=(1, 1), z_channels=32, ch=32, num_res_blocks=1,
                   codebook_show_usage=False)
TINY_GPT = GPTConfig(dim=64, n_layer=2, n_head=4, multiple_of=32, num_classes=10,
                     vocab_size=256, block_size=16)
TINY_T2I = GPTConfig(dim=64, n_layer=2, n_head=4, multiple_of=32, model_type="t2i",
                     vocab_size=256, block_size=16, cls_token_num=6, caption_dim=12,
                     caption_token_num=6)


@functools.cache
def _llamagen(kind: str, seed: int, dtype: torch.dtype) -> LlamaGenTeacher:
    gen = torch.Generator().manual_seed(seed)
    gpt = random_gpt(TINY_GPT if kind == "c2i" else TINY_T2I, generator=gen, dtype=dtype)
    with torch.no_grad():  # larger logits: peaked, informative distributions
        gpt.output.weight.mul_(30.0)
    vq = random_vq(TINY_VQ, generator=gen)
    with torch.no_grad():  # spread codewords (normalised by the VQ) so tokens are distinct
        vq.quantize.embedding.weight.normal_(0.0, 1.0, generator=gen)
    sampling = SamplingConfig(cfg_scale=2.0, top_k=100)
    return LlamaGenTeacher(f"tiny-{kind}", gpt, vq, sampling)


def load_tiny(spec: str, tokenizer_ckpt=None, device="cpu", dtype=torch.float32):
    if spec == "tiny-llamagen":
        return _llamagen("c2i", 0, dtype)
    if spec == "tiny-t2i":
        return _llamagen("t2i", 1, dtype)
    if spec == "tiny-var":
        return _tiny_var(dtype)
    raise KeyError(f"unknown tiny teacher {spec!r}")


@functools.cache
def _tiny_var(dtype: torch.dtype):
    return tiny_teacher(0, dtype=dtype)
