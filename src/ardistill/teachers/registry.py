"""Named teacher presets across families, and one way to load a teacher.

Each family module (`ardistill.teachers.<family>.presets`) exposes:
  PRESETS: dict[str, TeacherPreset]
  build_teacher(preset, *, model_ckpt, tokenizer_ckpt, device, dtype, random_weights) -> Teacher
  detect_preset(state_dict) -> str | None   # which preset a model checkpoint belongs to

`load_teacher` accepts a preset name or the path of a model checkpoint (whose preset is then
detected from its shapes), and fails with a message naming the problem.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ardistill.errors import CheckpointError
from ardistill.teachers.base import Teacher
from ardistill.teachers.llamagen import presets as llamagen_presets
from ardistill.teachers.preset import DDDefaults, TeacherPreset
from ardistill.teachers.var import presets as var_presets
from ardistill.utils.checkpoint import read_state_dict

__all__ = ["DDDefaults", "TeacherPreset", "all_presets", "get_preset", "load_teacher"]

FAMILIES = (llamagen_presets, var_presets)


def all_presets() -> dict[str, TeacherPreset]:
    out: dict[str, TeacherPreset] = {}
    for fam in FAMILIES:
        out.update(fam.PRESETS)
    return out


def get_preset(name: str) -> TeacherPreset:
    presets = all_presets()
    if name not in presets:
        raise KeyError(f"unknown teacher preset {name!r}; known: {', '.join(sorted(presets))}")
    return presets[name]


def load_teacher(
    spec: str,
    *,
    tokenizer_ckpt: str | Path | None = None,
    model_ckpt: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    random_weights: bool = False,
) -> Teacher:
    """Load a teacher from a preset name, a model checkpoint path, or a factory.

    spec: a preset name (`llamagen-b`, `var-d16`, `mnist-llamagen`, ...); the path of an
        official model checkpoint, whose preset is detected from its parameter shapes; or
        `package.module:function`, a callable `function(device=..., dtype=...)` returning a
        `teachers.base.Teacher` (your own model behind the teacher protocol, or a tiny one in
        a test). A spec is recorded in pairs datasets, so a factory must be importable again.
    model_ckpt / tokenizer_ckpt: official files for non-embedded presets.
    random_weights: build with random weights (benchmarks; speed does not depend on weights).
    dtype: of the AR model; a bf16 / fp16 teacher's `fingerprint()` is still that of its float32
        weights (`_keep_fp32_identity`), so its students and pairs datasets recognise it.
    """
    if dtype != torch.float32 and not random_weights:
        teacher = _load(spec, tokenizer_ckpt, model_ckpt, device, dtype, random_weights)
        return _keep_fp32_identity(teacher, lambda: load_teacher(
            spec, tokenizer_ckpt=tokenizer_ckpt, model_ckpt=model_ckpt, device="cpu",
            dtype=torch.float32))
    return _load(spec, tokenizer_ckpt, model_ckpt, device, dtype, random_weights)


def _keep_fp32_identity(teacher: Teacher, reload) -> Teacher:
    """A teacher loaded in bf16 / fp16 keeps the identity of its float32 weights: students,
    pairs datasets and records name the float32 fingerprint, and rounding the weights must not
    make the same teacher a stranger. The float32 copy is loaded on the CPU only when the
    fingerprint is first asked for, and only the digest is kept."""
    cache: dict[str, str] = {}

    def fingerprint() -> str:
        if "digest" not in cache:
            cache["digest"] = reload().fingerprint()
        return cache["digest"]

    teacher.fingerprint = fingerprint  # type: ignore[method-assign]
    return teacher


def _load(spec, tokenizer_ckpt, model_ckpt, device, dtype, random_weights) -> Teacher:
    presets = all_presets()
    if spec in presets:
        preset = presets[spec]
    elif _is_factory(spec):
        return _from_factory(spec, device=device, dtype=dtype)
    elif Path(spec).suffix in (".pt", ".pth", ".bin", ".safetensors") or Path(spec).exists():
        preset = presets[_detect(spec, presets)]
        model_ckpt = spec
    else:
        raise KeyError(
            f"{spec!r} is neither a teacher preset, an existing checkpoint file nor a "
            f"module:function factory; known presets: {', '.join(sorted(presets))}"
        )
    fam = llamagen_presets if preset.family == "llamagen" else var_presets
    return fam.build_teacher(
        preset,
        model_ckpt=model_ckpt,
        tokenizer_ckpt=tokenizer_ckpt,
        device=device,
        dtype=dtype,
        random_weights=random_weights,
    )


def _detect(path: str, presets: dict[str, TeacherPreset]) -> str:
    sd = read_state_dict(path)
    for fam in FAMILIES:
        name = fam.detect_preset(sd)
        if name:
            return name
    raise CheckpointError(
        f"{path}: not a checkpoint of any known teacher (LlamaGen GPT or VAR); "
        f"known presets: {', '.join(sorted(presets))}"
    )


def _is_factory(spec: str) -> bool:
    mod, sep, fn = spec.partition(":")
    return bool(sep) and mod.replace(".", "").replace("_", "").isalnum() and fn.isidentifier()


def _from_factory(spec: str, *, device, dtype) -> Teacher:
    mod_name, _, fn_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise KeyError(f"teacher factory {spec!r}: cannot import {mod_name} ({e})") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise KeyError(f"teacher factory {spec!r}: {mod_name} has no callable {fn_name}")
    teacher = fn(device=torch.device(device), dtype=dtype)
    if not isinstance(teacher, Teacher):
        raise TypeError(f"teacher factory {spec!r} returned {type(teacher).__name__}, not a "
                        "teachers.base.Teacher")
    return teacher
