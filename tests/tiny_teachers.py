"""Tiny real teachers of both families for the tests (random, informative weights).

`load_tiny(name)` gives "tiny-llamagen" (c2i, 4x4 = 16 tokens, V 256 x 8), "tiny-t2i" (caption
features, 4x4 tokens) and "tiny-var" (`teachers.var.tiny`, scales 1-4 = 30 tokens, V 64 x 8).
The commands take them as teacher factories (`--teacher tiny_teachers:tiny_var`, the
`module:function` form of `ardistill.teachers.registry.load_teacher`): tests/ is on the path of
the test process and of its subprocesses (`cli_env`).
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


def tiny_llamagen(device="cpu", dtype=torch.float32):
    return _llamagen("c2i", 0, dtype)


def tiny_t2i(device="cpu", dtype=torch.float32):
    return _llamagen("t2i", 1, dtype)


def tiny_var(device="cpu", dtype=torch.float32):
    return _tiny_var(dtype)


# name -> the `--teacher` spec of the commands
SPECS = {"tiny-llamagen": "tiny_teachers:tiny_llamagen", "tiny-t2i": "tiny_teachers:tiny_t2i",
         "tiny-var": "tiny_teachers:tiny_var"}


def load_tiny(spec: str, tokenizer_ckpt=None, device="cpu", dtype=torch.float32):
    """A tiny teacher by name ("tiny-var") or by its factory spec."""
    name = {v: k for k, v in SPECS.items()}.get(spec, spec)
    if name == "tiny-llamagen":
        return tiny_llamagen(dtype=dtype)
    if name == "tiny-t2i":
        return tiny_t2i(dtype=dtype)
    if name == "tiny-var":
        return tiny_var(dtype=dtype)
    raise KeyError(f"unknown tiny teacher {spec!r}")


@functools.cache
def _tiny_var(dtype: torch.dtype):
    return tiny_teacher(0, dtype=dtype)
