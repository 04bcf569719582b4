"""Named LlamaGen teacher presets (the registry contract of `teachers/registry.py`).

Every official GPT size as a class-conditional 256px teacher over VQ-16 (16384 x 8), plus the
text-conditional XL. DD teacher sampling (method.md §1): cfg 2.0, top-k 8000, top-p 1.0,
temperature 1.0. Presets with `embedded=True` name their weight files in
`extra["model_file"]` / `extra["tokenizer_file"]` (package files, added by the zoo).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ardistill.errors import CheckpointError
from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig, gpt_config
from ardistill.teachers.llamagen.loading import (
    classify_state_dict,
    gpt_shape_of,
    load_gpt,
    load_vq,
    random_gpt,
    random_vq,
)
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher
from ardistill.teachers.preset import DDDefaults, TeacherPreset, embedded_checkpoints
from ardistill.utils.checkpoint import read_state_dict

DD_SAMPLING = SamplingConfig(cfg_scale=2.0, temperature=1.0, top_k=8000, top_p=1.0)
VQ16 = VQConfig()  # VQ-16: codebook 16384 x 8, downsample 16, ch 128

# preset suffix -> (official size, official c2i file or None when none was released)
_C2I: dict[str, tuple[str, str | None]] = {
    "b": ("B", "c2i_B_256.pt"),
    "l": ("L", "c2i_L_256.pt"),
    "xl": ("XL", "c2i_XL_384.pt"),
    "xxl": ("XXL", "c2i_XXL_384.pt"),
    "xxxl": ("XXXL", None),
    "1b": ("1B", None),
    "3b": ("3B", "c2i_3B_384.pt"),
    "7b": ("7B", None),
}
_DD = {"b": DDDefaults(t2=80, split=80),
       "l": DDDefaults(t2=80, split=130, split_teacher_involved=(180, 220))}


def _c2i_preset(suffix: str) -> TeacherPreset:
    size, file = _C2I[suffix]
    files = (file, "vq_ds16_c2i.pt") if file else ()
    note = "" if file is None or file.endswith("_256.pt") else (
        f"; {file} was trained at 384px, the preset samples its 16x16 (256px) grid")
    return TeacherPreset(
        name=f"llamagen-{suffix}",
        family="llamagen",
        description=f"LlamaGen GPT-{size} class-conditional, 256px, VQ-16{note}",
        model_config=gpt_config(size, vocab_size=16384, block_size=256, num_classes=1000),
        tokenizer_config=VQ16,
        sampling=DD_SAMPLING,
        dd=_DD.get(suffix, DDDefaults(t2=80, split=130)),
        official_files=files,
    )


PRESETS: dict[str, TeacherPreset] = {f"llamagen-{s}": _c2i_preset(s) for s in _C2I}
# The embedded default (ardistill/zoo): trained here on the embedded MNIST digits
# (`ardistill teacher train mnist-llamagen`, recipe in zoo/recipes.py, numbers in docs/zoo.md).
# The official classes at a small size: VQ with ch 32 and two downsampling levels instead of
# four (32x32 px -> 8x8 = 64 tokens, codebook 256 x 8, L2-normalised lookup as official) and a
# 4-layer GPT (width 96, 4 heads, 2-D RoPE, class token, null class row for CFG).
MNIST_VQ = VQConfig(codebook_size=256, codebook_embed_dim=8, encoder_ch_mult=(1, 1, 1),
                    decoder_ch_mult=(1, 1, 1), z_channels=32, ch=32, num_res_blocks=1,
                    codebook_show_usage=False)
MNIST_GPT = GPTConfig(dim=96, n_layer=4, n_head=4, multiple_of=32, num_classes=10,
                      vocab_size=256, block_size=64, token_dropout_p=0.05, resid_dropout_p=0.05,
                      ffn_dropout_p=0.05)
PRESETS["mnist-llamagen"] = TeacherPreset(
    name="mnist-llamagen",
    family="llamagen",
    description="embedded LlamaGen-style teacher: MNIST 32x32, 8x8 tokens, VQ 256 x 8, "
    "GPT 4 x 96, 10 digit classes (weights ship with ardistill)",
    model_config=MNIST_GPT,
    tokenizer_config=MNIST_VQ,
    sampling=SamplingConfig(cfg_scale=2.0, temperature=1.0, top_k=0, top_p=1.0),
    # 64 tokens: t2 = split = 20, the fraction of the image that LlamaGen-B's released
    # t2 = split = 80 covers of its 256 tokens (about 0.31; docs/zoo.md).
    dd=DDDefaults(t2=20, split=20),
    embedded=True,
    extra={"model_file": "mnist_llamagen_gpt.safetensors",
           "tokenizer_file": "mnist_llamagen_vq.safetensors",
           "record_file": "mnist_llamagen.json",
           "features": "mnist"},
)
# The embedded text-to-image teacher: the same VQ (its file is shared) and GPT shapes, with
# 16 caption slots of all-MiniLM-L6-v2 token states (384 wide) instead of the class token,
# trained here on captions written from each digit's label and measured attributes
# (`ardistill.text.mnist_captions`; `ardistill teacher train mnist-t2i --stage ar`).
MNIST_T2I_CAPTION_TOKENS = 16
MNIST_T2I_GPT = replace(MNIST_GPT, model_type="t2i", caption_dim=384,
                        cls_token_num=MNIST_T2I_CAPTION_TOKENS,
                        caption_token_num=MNIST_T2I_CAPTION_TOKENS)
PRESETS["mnist-t2i"] = replace(
    PRESETS["mnist-llamagen"],  # same VQ, sampling and DD settings
    name="mnist-t2i",
    description="embedded LlamaGen-style text-to-image teacher: MNIST 32x32, 8x8 tokens, "
    "mnist-llamagen's VQ, GPT 4 x 96 reading 16 all-MiniLM-L6-v2 caption tokens (prompts "
    "such as 'a thick seven leaning left'; weights ship with ardistill)",
    model_config=MNIST_T2I_GPT,
    extra={**PRESETS["mnist-llamagen"].extra,
           "model_file": "mnist_t2i_gpt.safetensors",
           "record_file": "mnist_t2i.json",
           "encoder": "minilm",
           "max_length": MNIST_T2I_CAPTION_TOKENS},
)
PRESETS["llamagen-xl-t2i"] = TeacherPreset(
    name="llamagen-xl-t2i",
    family="llamagen",
    description="LlamaGen GPT-XL text-conditional (stage 1), 256px, VQ-16, "
    "FLAN-T5-XL caption features (120 x 2048)",
    model_config=gpt_config("XL", model_type="t2i", block_size=256, cls_token_num=120,
                            caption_dim=2048),
    tokenizer_config=VQ16,
    sampling=DD_SAMPLING,
    dd=DDDefaults(t2=80, split=130),
    official_files=("t2i_XL_stage1_256.pt", "vq_ds16_t2i.pt"),
)


def _missing_files_error(preset: TeacherPreset, which: str) -> CheckpointError:
    if preset.official_files:
        need = (f"model_ckpt={preset.official_files[0]} (GPT) and "
                f"tokenizer_ckpt={preset.official_files[1]} (VQ-16)")
    else:
        need = ("a GPT checkpoint of this size (no official one was released) and a VQ-16 "
                "tokenizer checkpoint (vq_ds16_c2i.pt)")
    return CheckpointError(
        f"{preset.name}: no {which} checkpoint given. This preset needs the official files: "
        f"{need}. On the command line give the model file as --teacher (its preset is "
        "detected) and the VQ file as --tokenizer-ckpt; in Python, load_teacher(model_ckpt=..., "
        "tokenizer_ckpt=...); random_weights=True builds one for speed tests."
    )


def build_teacher(
    preset: TeacherPreset,
    *,
    model_ckpt: str | Path | None = None,
    tokenizer_ckpt: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    random_weights: bool = False,
    seed: int = 0,
) -> LlamaGenTeacher:
    """A LlamaGen teacher from official files, the preset's embedded files, or random weights.

    dtype applies to the GPT (float32 / bfloat16 / float16); the VQ decoder stays float32.
    """
    gcfg: GPTConfig = preset.model_config
    vcfg: VQConfig = preset.tokenizer_config
    if random_weights:
        gen = torch.Generator().manual_seed(seed)
        gpt = random_gpt(gcfg, generator=gen, device=device, dtype=dtype)
        vq = random_vq(vcfg, generator=gen, device=device)
        return LlamaGenTeacher(preset.name, gpt, vq, preset.sampling)
    if preset.embedded and (model_ckpt is None or tokenizer_ckpt is None):
        model, tok = embedded_checkpoints(preset, model_ckpt, tokenizer_ckpt)
        return build_teacher(preset, model_ckpt=model, tokenizer_ckpt=tok, device=device,
                             dtype=dtype)
    if model_ckpt is None:
        raise _missing_files_error(preset, "GPT model")
    if tokenizer_ckpt is None:
        raise _missing_files_error(preset, "VQ tokenizer")
    gpt = load_gpt(gcfg, _read_gpt(preset, model_ckpt), what=f"{preset.name} GPT",
                   source=str(model_ckpt), device=device, dtype=dtype)
    vq = load_vq(vcfg, read_state_dict(tokenizer_ckpt), what=f"{preset.name} VQ tokenizer",
                 source=str(tokenizer_ckpt), device=device)
    return LlamaGenTeacher(preset.name, gpt, vq, preset.sampling)


def _read_gpt(preset: TeacherPreset, path: str | Path) -> dict:
    """Read a GPT file and say which preset it is when it is not `preset`'s size."""
    sd = read_state_dict(path)
    if classify_state_dict(sd).startswith("llamagen-gpt"):
        found = detect_preset(sd)
        want = preset.model_config
        shape = gpt_shape_of(sd)
        if (shape["dim"], shape["n_layer"]) != (want.dim, want.n_layer):
            raise CheckpointError(
                f"{path}: a LlamaGen GPT with dim={shape['dim']}, {shape['n_layer']} layers "
                f"({found or 'no known preset'}), not {preset.name} (dim={want.dim}, "
                f"{want.n_layer} layers)"
            )
    return sd


def detect_preset(state_dict: dict) -> str | None:
    """The preset whose GPT matches this state dict's type, width, depth and vocabulary."""
    kind = classify_state_dict(state_dict)
    if not kind.startswith("llamagen-gpt"):
        return None
    shape = gpt_shape_of(state_dict)
    model_type = kind.rsplit("-", 1)[1]
    for name, p in PRESETS.items():
        c = p.model_config
        if (c.model_type, c.dim, c.n_layer, c.vocab_size) == (
            model_type, shape["dim"], shape["n_layer"], shape["vocab_size"]
        ):
            return name
    return None
