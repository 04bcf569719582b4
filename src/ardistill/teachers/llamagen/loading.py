"""Build LlamaGen modules without random init and load official weights strictly.

Large models are built on the meta device (no memory, no random init), then loaded with
`load_state_dict(assign=True)` and moved to the target device and dtype. Official files carry
transient entries that are not weights (KV caches left by `generate()`, a `freqs_cis` table);
those are dropped, anything else unknown is an error (utils/checkpoint.py `load_strict`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ardistill.errors import CheckpointError
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.utils.checkpoint import load_strict

GPT_TRANSIENT = (r"layers\.\d+\.attention\.kv_cache\.(k|v)_cache", r"freqs_cis")

# What a state dict is, from keys only one kind of model has.
_KIND_MARKERS: tuple[tuple[str, str], ...] = (
    ("final_layer_conti.linear.weight", "a Distilled Decoding student (not a teacher)"),
    ("n_d_embed.weight", "a Distilled Decoding student (not a teacher)"),
    ("quantize.quant_resi.qresi_ls.0.weight", "a VAR multi-scale VQVAE"),
    ("blocks.0.attn.mat_qkv.weight", "a VAR transformer"),
    ("cls_embedding.embedding_table.weight", "llamagen-gpt-c2i"),
    ("cls_embedding.cap_proj.fc1.weight", "llamagen-gpt-t2i"),
    ("quantize.embedding.weight", "llamagen-vq"),
)


def classify_state_dict(sd: Mapping[str, Tensor]) -> str:
    """'llamagen-gpt-c2i' | 'llamagen-gpt-t2i' | 'llamagen-vq' | a description of another
    known model | 'unknown'."""
    for key, kind in _KIND_MARKERS:
        if key in sd:
            return kind
    return "unknown"


def gpt_shape_of(sd: Mapping[str, Tensor]) -> dict[str, int]:
    """dim, n_layer and vocab_size of a LlamaGen GPT state dict."""
    if "tok_embeddings.weight" not in sd:
        raise CheckpointError("not a LlamaGen GPT state dict: no 'tok_embeddings.weight'")
    vocab, dim = sd["tok_embeddings.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))}
    return {"dim": int(dim), "n_layer": len(layers), "vocab_size": int(vocab)}


def _expect_kind(sd: Mapping[str, Tensor], want: str, what: str, source: str) -> None:
    kind = classify_state_dict(sd)
    if kind != want:
        label = {"llamagen-gpt-c2i": "a LlamaGen class-conditional GPT",
                 "llamagen-gpt-t2i": "a LlamaGen text-conditional GPT",
                 "llamagen-vq": "a LlamaGen VQ tokenizer"}.get(kind, kind)
        raise CheckpointError(f"{source}: this is {label} checkpoint, but {what} was expected")


def _place(module: nn.Module, device, dtype: torch.dtype | None) -> nn.Module:
    return module.to(device=device) if dtype is None else module.to(device=device, dtype=dtype)


def load_gpt(cfg: GPTConfig, sd: Mapping[str, Tensor], *, what: str, source: str = "checkpoint",
             device="cpu", dtype: torch.dtype = torch.float32) -> GPT:
    """GPT built on meta and loaded strictly from `sd` (official key names)."""
    _expect_kind(sd, f"llamagen-gpt-{cfg.model_type}", what, source)
    with torch.device("meta"):
        gpt = GPT(cfg)
    load_strict(gpt, sd, what=what, transient=GPT_TRANSIENT, assign=True)
    return _place(gpt, device, dtype).eval()


def load_vq(cfg: VQConfig, sd: Mapping[str, Tensor], *, what: str, source: str = "checkpoint",
            device="cpu") -> VQModel:
    """VQ tokenizer built on meta and loaded strictly (kept in float32)."""
    _expect_kind(sd, "llamagen-vq", what, source)
    with torch.device("meta"):
        vq = VQModel(cfg)
    load_strict(vq, sd, what=what, assign=True)
    return _place(vq, device, torch.float32).eval()


def random_gpt(cfg: GPTConfig, *, generator: torch.Generator, device="cpu",
               dtype: torch.dtype = torch.float32) -> GPT:
    """GPT with official-style random weights (output head not zeroed, so logits are
    informative), drawn on the CPU from `generator`."""
    with torch.device("meta"):
        gpt = GPT(cfg)
    gpt = gpt.to_empty(device="cpu")
    gpt.init_weights(generator, zero_output=False)
    return _place(gpt, device, dtype).eval()


@torch.no_grad()
def init_vq_weights(vq: VQModel, generator: torch.Generator) -> None:
    """PyTorch-default-like init drawn from `generator`: conv U(-1/sqrt(fan_in), +), norms
    (1, 0), codebook U(-1/V, 1/V), usage buffer 0."""
    for m in vq.modules():
        if isinstance(m, nn.Conv2d):
            bound = (m.in_channels * m.kernel_size[0] * m.kernel_size[1]) ** -0.5
            m.weight.uniform_(-bound, bound, generator=generator)
            m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, nn.GroupNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
    n = vq.config.codebook_size
    vq.quantize.embedding.weight.uniform_(-1.0 / n, 1.0 / n, generator=generator)
    if vq.config.codebook_show_usage:
        vq.quantize.codebook_used.zero_()


def random_vq(cfg: VQConfig, *, generator: torch.Generator, device="cpu") -> VQModel:
    with torch.device("meta"):
        vq = VQModel(cfg)
    vq = vq.to_empty(device="cpu")
    init_vq_weights(vq, generator)
    return vq.to(device).eval()
