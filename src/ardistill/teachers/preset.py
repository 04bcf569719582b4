"""What a named teacher preset is: its configs, its DD settings, and where its files come from.

Each family module (`ardistill.teachers.<family>.presets`) defines its `PRESETS` with these
dataclasses; `ardistill.teachers.registry` collects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ardistill.teachers.base import SamplingConfig
from ardistill.weights import shipped_path


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
    embedded: bool = False  # weights ship inside ardistill (`ardistill.weights`)
    extra: dict = field(default_factory=dict)


def embedded_checkpoints(preset: TeacherPreset, model_ckpt: str | Path | None,
                         tokenizer_ckpt: str | Path | None) -> tuple[str | Path, str | Path]:
    """(model_ckpt, tokenizer_ckpt) with the preset's shipped files (`ardistill.weights`,
    names in `extra["model_file"]` / `extra["tokenizer_file"]`) filling in what was not
    given."""
    hint = f"reinstall ardistill or rebuild it with `ardistill teacher train {preset.name}`"
    out = []
    for given, key in ((model_ckpt, "model_file"), (tokenizer_ckpt, "tokenizer_file")):
        out.append(given if given is not None else
                   shipped_path(preset.extra[key], f"{preset.name} weight file", hint))
    return out[0], out[1]
