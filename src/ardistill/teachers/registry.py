"""Named teacher presets across families, and one way to load a teacher.

Each family module (`ardistill.teachers.<family>.presets`) exposes:
  PRESETS: dict[str, TeacherPreset]
  build_teacher(preset, *, model_ckpt, tokenizer_ckpt, device, dtype, random_weights) -> Teacher
  detect_preset(state_dict) -> str | None   # which preset a model checkpoint belongs to

`load_teacher` accepts a preset name or the path of a model checkpoint (whose preset is then
detected from its shapes), and fails with a message naming the problem.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ardistill.teachers.base import SamplingConfig, Teacher

FAMILY_MODULES = (
    "ardistill.teachers.llamagen.presets",
    "ardistill.teachers.var.presets",
)


@dataclass(frozen=True)
class DDDefaults:
    """Released DD settings for a teacher (method.md §5-6), in AR steps (tokens / scales).

    t2: the second timestep of 2-step sampling and training.
    split: positions of steps < split take the logits head, the rest the continuous head.
    split_teacher_involved: splits used with teacher-involved sampling.
    """

    t2: int
    split: int
    split_teacher_involved: tuple[int, ...] = ()


@dataclass(frozen=True)
class TeacherPreset:
    name: str
    family: str
    description: str
    model_config: Any  # the family's model config dataclass
    tokenizer_config: Any  # the family's tokenizer config dataclass
    sampling: SamplingConfig  # the teacher sampling used for DD
    dd: DDDefaults
    official_files: tuple[str, ...] = ()  # e.g. ("c2i_B_256.pt", "vq_ds16_c2i.pt")
    embedded: bool = False  # weights ship inside ardistill (the zoo)
    extra: dict = field(default_factory=dict)


# Package folder of the shipped weights (`ardistill/zoo/weights`), read as package data.
EMBEDDED_WEIGHTS = ("zoo", "weights")


@contextlib.contextmanager
def embedded_checkpoints(
    preset: TeacherPreset, model_ckpt: str | Path | None, tokenizer_ckpt: str | Path | None
) -> Iterator[tuple[str | Path, str | Path]]:
    """(model_ckpt, tokenizer_ckpt) with the preset's shipped package files filling in what was
    not given (`extra["model_file"]` / `extra["tokenizer_file"]`, found through
    `importlib.resources`, so an installed package needs nothing else)."""
    from importlib import resources

    from ardistill.utils.checkpoint import CheckpointError

    folder = resources.files("ardistill")
    for part in EMBEDDED_WEIGHTS:
        folder = folder.joinpath(part)
    with contextlib.ExitStack() as stack:
        out = []
        for given, key in ((model_ckpt, "model_file"), (tokenizer_ckpt, "tokenizer_file")):
            if given is not None:
                out.append(given)
                continue
            res = folder.joinpath(preset.extra[key])
            if not res.is_file():
                raise CheckpointError(
                    f"{preset.name}: the shipped weight file {preset.extra[key]} is missing from "
                    f"the installed ardistill package ({'/'.join(EMBEDDED_WEIGHTS)}); reinstall "
                    f"ardistill or rebuild it with `ardistill teacher train {preset.name}`"
                )
            out.append(stack.enter_context(resources.as_file(res)))
        yield out[0], out[1]


def _families():
    # A family whose module is not part of this build (yet) is skipped, not an import error.
    out = []
    for name in FAMILY_MODULES:
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return out


def all_presets() -> dict[str, TeacherPreset]:
    out: dict[str, TeacherPreset] = {}
    for fam in _families():
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
    """Load a teacher from a preset name or a model checkpoint path.

    spec: a preset name (`llamagen-b`, `var-d16`, `mnist-llamagen`, ...) or the path of an
        official model checkpoint, whose preset is detected from its parameter shapes.
    model_ckpt / tokenizer_ckpt: official files for non-embedded presets.
    random_weights: build with random weights (benchmarks; speed does not depend on weights).
    """
    presets = all_presets()
    if spec in presets:
        preset = presets[spec]
    elif Path(spec).suffix in (".pt", ".pth", ".bin", ".safetensors") or Path(spec).exists():
        from ardistill.utils.checkpoint import CheckpointError, read_state_dict

        sd = read_state_dict(spec)
        name = None
        for fam in _families():
            name = fam.detect_preset(sd)
            if name:
                break
        if name is None:
            raise CheckpointError(
                f"{spec}: not a checkpoint of any known teacher (LlamaGen GPT or VAR); "
                f"known presets: {', '.join(sorted(presets))}"
            )
        preset = presets[name]
        model_ckpt = spec
    else:
        raise KeyError(
            f"{spec!r} is neither a teacher preset nor an existing checkpoint file; "
            f"known presets: {', '.join(sorted(presets))}"
        )
    fam = importlib.import_module(f"ardistill.teachers.{preset.family}.presets")
    return fam.build_teacher(
        preset,
        model_ckpt=model_ckpt,
        tokenizer_ckpt=tokenizer_ckpt,
        device=device,
        dtype=dtype,
        random_weights=random_weights,
    )
