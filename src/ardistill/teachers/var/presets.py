"""Named VAR teachers (the registry contract at the top of `teachers/registry.py`).

Official files (FoundationVision/VAR on the Hugging Face hub): `var_d16.pth`, `var_d20.pth`,
`var_d24.pth`, `var_d30.pth` (the transformer) and `vae_ch160v4096z32.pth` (the VQVAE, shared
by all sizes). DD sampling defaults follow method.md §1 (cfg 2.0, top-k 900, top-p 0.95);
DD timesteps follow the released VAR-DD models (method.md §5-6).

Embedded presets (the zoo's `mnist-var`, weights shipped as package files) set
`embedded=True` and name their files in `extra["model_file"]` / `extra["tokenizer_file"]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ardistill.errors import CheckpointError
from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.preset import DDDefaults, TeacherPreset, embedded_checkpoints
from ardistill.teachers.var.config import VARConfig, VQVAEConfig
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.weights import (
    describe_checkpoint,
    load_var,
    load_vqvae,
    random_var,
    random_vqvae,
)
from ardistill.utils.checkpoint import read_state_dict

VAE_FILE = "vae_ch160v4096z32.pth"
DD_SAMPLING = SamplingConfig(cfg_scale=2.0, top_k=900, top_p=0.95)
# Released VAR-DD settings (scales): d16 t2 = split = 5; d20 / d24 (and d30, by the same
# rule for the deeper models) t2 = split = 4.
_DD = {16: DDDefaults(t2=5, split=5), 20: DDDefaults(t2=4, split=4),
       24: DDDefaults(t2=4, split=4), 30: DDDefaults(t2=4, split=4)}


def _official(depth: int) -> TeacherPreset:
    return TeacherPreset(
        name=f"var-d{depth}",
        family="var",
        description=f"VAR-d{depth} (ImageNet 256x256, 10 scales, 680 tokens), official weights",
        model_config=VARConfig(depth=depth),
        tokenizer_config=VQVAEConfig(),
        sampling=DD_SAMPLING,
        dd=_DD[depth],
        official_files=(f"var_d{depth}.pth", VAE_FILE),
    )


PRESETS: dict[str, TeacherPreset] = {p.name: p for p in map(_official, (16, 20, 24, 30))}

# The embedded default (ardistill/zoo): trained here on the embedded MNIST digits
# (`ardistill teacher train mnist-var`, recipe in zoo/recipes.py, numbers in docs/zoo.md).
# The official classes at a small size: a VQVAE with ch 32 and two downsampling levels
# (32x32 px -> 8x8 latent), 6 scales (1, 2, 3, 4, 6, 8) = 130 tokens, codebook 256 x 16 (raw,
# as official), partially shared Phi; a 6-block VAR of width 64 (4 heads, AdaLN, null class).
MNIST_PATCH_NUMS = (1, 2, 3, 4, 6, 8)
MNIST_VQVAE = VQVAEConfig(vocab_size=256, z_channels=16, ch=32, ch_mult=(1, 1, 1),
                          num_res_blocks=1, patch_nums=MNIST_PATCH_NUMS)
MNIST_VAR = VARConfig(depth=6, embed_dim=64, num_heads=4, num_classes=10, vocab_size=256,
                      cvae=16, patch_nums=MNIST_PATCH_NUMS)
PRESETS["mnist-var"] = TeacherPreset(
    name="mnist-var",
    family="var",
    description="embedded VAR-style teacher: MNIST 32x32, 6 scales up to 8x8 (130 tokens), "
    "VQVAE 256 x 16, VAR 6 x 64, 10 digit classes (weights ship with ardistill)",
    model_config=MNIST_VAR,
    tokenizer_config=MNIST_VQVAE,
    sampling=SamplingConfig(cfg_scale=2.0, top_k=0, top_p=1.0),
    # 6 scales: t2 = split = 3 (scales 1, 2, 3 = 14 of 130 tokens), the middle of the scale
    # ladder as VAR-d16's released 5 of 10 (docs/zoo.md).
    dd=DDDefaults(t2=3, split=3),
    embedded=True,
    extra={"model_file": "mnist_var_model.safetensors",
           "tokenizer_file": "mnist_var_vqvae.safetensors",
           "record_file": "mnist_var.json",
           "features": "mnist"},
)


def build_teacher(
    preset: TeacherPreset,
    *,
    model_ckpt: str | Path | Mapping[str, Tensor] | None = None,
    tokenizer_ckpt: str | Path | Mapping[str, Tensor] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    random_weights: bool = False,
    seed: int = 0,
    compile: bool = False,
) -> VARTeacher:
    """A VARTeacher from official files (or state dicts), embedded files, or random weights.

    random_weights: the official initialisation drawn from a generator seeded with `seed`
        (benchmarks: sampling speed does not depend on the weights).
    compile: run the transformer blocks through torch.compile in sessions.
    """
    if random_weights:
        gen = torch.Generator().manual_seed(seed)
        model = random_var(preset.model_config, gen, device=device, dtype=dtype)
        vqvae = random_vqvae(preset.tokenizer_config, gen, device=device)
        return VARTeacher(preset.name, model, vqvae, preset.sampling, compile=compile)
    if preset.embedded and (model_ckpt is None or tokenizer_ckpt is None):
        model, tok = embedded_checkpoints(preset, model_ckpt, tokenizer_ckpt)
        return build_teacher(preset, model_ckpt=model, tokenizer_ckpt=tok, device=device,
                             dtype=dtype, compile=compile)
    if model_ckpt is None or tokenizer_ckpt is None:
        missing = [f for f, given in zip(preset.official_files, (model_ckpt, tokenizer_ckpt))
                   if given is None]
        raise ValueError(
            f"teacher preset {preset.name!r} needs the official weight files "
            f"{' and '.join(missing)} (model_ckpt: {preset.official_files[0]}, tokenizer_ckpt: "
            f"{preset.official_files[1]}; from the FoundationVision/VAR release), or "
            "random_weights=True for speed benchmarks"
        )
    sd = model_ckpt if isinstance(model_ckpt, Mapping) else read_state_dict(model_ckpt)
    _check_preset(preset, sd, model_ckpt)
    model = load_var(preset.model_config, sd, device=device, dtype=dtype,
                     what=f"{preset.name} transformer ({_label(model_ckpt)})")
    vqvae = load_vqvae(preset.tokenizer_config, tokenizer_ckpt, device=device,
                       what=f"{preset.name} VQVAE ({_label(tokenizer_ckpt)})")
    return VARTeacher(preset.name, model, vqvae, preset.sampling, compile=compile)


def _label(src) -> str:
    return "state dict" if isinstance(src, Mapping) else str(src)


def _check_preset(preset: TeacherPreset, sd: Mapping[str, Tensor], src) -> None:
    found = detect_preset(sd)
    if found is None and preset.name in PRESETS:
        want = f" ({preset.official_files[0]})" if preset.official_files else ""
        raise CheckpointError(f"{_label(src)}: expected the {preset.name} transformer{want}, "
                              f"but the file is {describe_checkpoint(sd)}; "
                              f"{_shape_hint(preset, sd)}")
    if found is not None and found != preset.name:
        raise CheckpointError(f"{_label(src)}: this is a {found} checkpoint, not {preset.name}")


def _shape_hint(preset: TeacherPreset, sd: Mapping[str, Tensor]) -> str:
    """Which of the preset's identifying entries are missing or of another shape."""
    want = preset.model_config
    shapes = {"pos_1LC": (1, want.seq_len, want.width),
              "class_emb.weight": (want.num_classes + 1, want.width),
              "head.weight": (want.vocab_size, want.width),
              "word_embed.weight": (want.width, want.cvae)}
    bad = [f"{k}: {'missing' if k not in sd else tuple(sd[k].shape)} vs {s}"
           for k, s in shapes.items() if k not in sd or tuple(sd[k].shape) != s]
    return "; ".join(bad) if bad else "the block count differs"


def detect_preset(state_dict: Mapping[str, Tensor]) -> str | None:
    """The official VAR preset whose transformer shapes match `state_dict`, else None."""
    if not describe_checkpoint(state_dict).startswith("a VAR transformer"):
        return None
    for name, p in PRESETS.items():
        cfg: VARConfig = p.model_config
        shapes = {
            "pos_1LC": (1, cfg.seq_len, cfg.width),
            "class_emb.weight": (cfg.num_classes + 1, cfg.width),
            "head.weight": (cfg.vocab_size, cfg.width),
            "word_embed.weight": (cfg.width, cfg.cvae),
        }
        n_blocks = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
        if n_blocks == cfg.depth and all(
            k in state_dict and tuple(state_dict[k].shape) == s for k, s in shapes.items()
        ):
            return name
    return None
