"""Building VAR / VQVAE modules from official files (strict, meta device) or random weights.

The official files are raw state dicts (`torch.save(model.state_dict())`), loaded with
`weights_only=True`; wrappers ("model", "ema", "module", ...) are unwrapped by
`utils.checkpoint.read_state_dict`. Modules are built on the meta device (no random weights
materialised) and the file's tensors are assigned. The constant buffers (`lvl_1L`,
`attn_bias_for_masking`, `zero_k_bias`) are checked against their computed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ardistill.errors import CheckpointError
from ardistill.teachers.var.config import VARConfig, VQVAEConfig
from ardistill.teachers.var.model import VAR, level_buffers
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.utils.checkpoint import load_strict, read_state_dict

StateSource = str | Path | Mapping[str, Tensor]


def _state_dict(src: StateSource) -> dict[str, Tensor]:
    return dict(src) if isinstance(src, Mapping) else read_state_dict(src)


def describe_checkpoint(sd: Mapping[str, Tensor]) -> str:
    """A short guess of what a state dict is, for error messages."""
    if "n_d_embed.weight" in sd or "final_layer_conti.linear.weight" in sd:
        return "a DD student checkpoint (VAR-DD or LlamaGen-DD), not a teacher"
    if "class_emb.weight" in sd and "blocks.0.attn.mat_qkv.weight" in sd:
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        return f"a VAR transformer checkpoint of depth {depth}"
    if "quantize.embedding.weight" in sd and "encoder.conv_in.weight" in sd:
        return "a VAR multi-scale VQVAE checkpoint"
    if "tok_embeddings.weight" in sd or "layers.0.attention.wqkv.weight" in sd:
        return "a LlamaGen GPT checkpoint"
    if "quantize.embedding.weight" in sd or "quantize.codebook_used" in sd:
        return "a VQ tokenizer checkpoint (LlamaGen VQ-16?)"
    return "not a recognised ardistill teacher checkpoint"


def _check_kind(sd: Mapping[str, Tensor], want: str, what: str) -> None:
    kind = describe_checkpoint(sd)
    if not kind.startswith(want):
        raise CheckpointError(f"{what}: the file is {kind}")


def load_var(cfg: VARConfig, src: StateSource, *, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, what: str = "VAR") -> VAR:
    """Official `var_d*.pth` (or a state dict) -> VAR in eval mode on `device` / `dtype`."""
    sd = _state_dict(src)
    _check_kind(sd, "a VAR transformer", what)
    with torch.device("meta"):
        model = VAR(cfg)
    load_strict(model, sd, what=what, assign=True)
    model = model.to(device=device, dtype=dtype)
    _check_buffers(model, what)
    return model.eval()


def load_vqvae(cfg: VQVAEConfig, src: StateSource, *, device: torch.device | str = "cpu",
               what: str = "VAR VQVAE") -> VQVAE:
    """Official `vae_ch160v4096z32.pth` (or a state dict) -> VQVAE (float32, eval)."""
    sd = _state_dict(src)
    _check_kind(sd, "a VAR multi-scale VQVAE", what)
    with torch.device("meta"):
        vae = VQVAE(cfg)
    load_strict(vae, sd, what=what, assign=True)
    return vae.to(device=device, dtype=torch.float32).eval()


@torch.no_grad()
def _check_buffers(model: VAR, what: str) -> None:
    lvl, bias = level_buffers(model.cfg)
    dev = model.lvl_1L.device
    if not torch.equal(model.lvl_1L, lvl.to(dev)):
        raise CheckpointError(f"{what}: buffer 'lvl_1L' differs from the scale layout "
                              f"{model.cfg.patch_nums} (a model with other patch_nums?)")
    if not torch.equal(model.attn_bias_for_masking.float(), bias.to(dev)):
        raise CheckpointError(f"{what}: buffer 'attn_bias_for_masking' is not the block-causal "
                              f"mask of patch_nums {model.cfg.patch_nums}")
    for i, blk in enumerate(model.blocks):
        if bool(blk.attn.zero_k_bias.any()):
            raise CheckpointError(f"{what}: buffer 'blocks.{i}.attn.zero_k_bias' is not zero")


def random_var(cfg: VARConfig, generator: torch.Generator, *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, **init) -> VAR:
    """A VAR with the official initialisation drawn from `generator` (built on meta first,
    so no global RNG is touched). init: VAR.init_weights keywords (init_head, ...)."""
    with torch.device("meta"):
        model = VAR(cfg)
    model = model.to_empty(device=generator.device)
    model.init_weights(generator, **init)
    return model.to(device=device, dtype=dtype).eval()


def random_vqvae(cfg: VQVAEConfig, generator: torch.Generator, *,
                 device: torch.device | str = "cpu") -> VQVAE:
    """A VQVAE with PyTorch-style default initialisation drawn from `generator`."""
    with torch.device("meta"):
        vae = VQVAE(cfg)
    vae = vae.to_empty(device=generator.device)
    init_vqvae_weights(vae, generator)
    return vae.to(device=device).eval()


@torch.no_grad()
def init_vqvae_weights(vae: VQVAE, generator: torch.Generator) -> None:
    """Kaiming-uniform convolutions (PyTorch's default bound 1/sqrt(fan_in)), unit GroupNorm,
    codebook uniform in +-1/V (official `eini=-1`), zero usage statistics."""
    for m in vae.modules():
        if isinstance(m, nn.Conv2d):
            bound = 1.0 / (m.weight[0].numel() ** 0.5)
            m.weight.uniform_(-bound, bound, generator=generator)
            m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, nn.GroupNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
    V = vae.cfg.vocab_size
    vae.quantize.embedding.weight.uniform_(-1.0 / V, 1.0 / V, generator=generator)
    vae.quantize.ema_vocab_hit_SV.zero_()
