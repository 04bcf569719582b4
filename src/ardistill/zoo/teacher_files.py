"""The files of an embedded teacher: fp16 safetensors weights and the JSON record beside them.

Per preset (names from `preset.extra`): `model_file` (the AR model), `tokenizer_file` (the VQ
tokenizer) and `record_file` (JSON: the commands, seed, recipe, data split, torch version,
sha256 of each file, training logs, the measured quality and reference outputs). Weights are
stored as float16 (half the bytes); loading upcasts them to float32, and everything the record
reports was measured on the upcast weights, so the shipped files reproduce it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ardistill.teachers.base import Condition, Teacher, decode
from ardistill.teachers.preset import TeacherPreset
from ardistill.utils.files import sha256_file
from ardistill.utils.safetensors_io import save_safetensors
from ardistill.weights import shipped_json

REFERENCE_LABELS = (3, 7)
STORAGE_DTYPE = torch.float16


def file_names(preset: TeacherPreset) -> dict[str, str]:
    """{"model": ..., "tokenizer": ..., "record": ...} file names of an embedded preset."""
    if not preset.embedded:
        raise ValueError(f"{preset.name} is not an embedded teacher (its weights do not ship)")
    return {"model": preset.extra["model_file"], "tokenizer": preset.extra["tokenizer_file"],
            "record": preset.extra["record_file"]}


def save_half(module: nn.Module, path: str | Path, metadata: dict[str, str]) -> dict:
    """Write `module`'s state dict with floating tensors as float16 (safetensors).

    returns: {"name", "bytes", "sha256", "dtype", "max_abs_rounding"} of the written file.
    """
    path = Path(path)
    sd, worst = {}, 0.0
    for k, v in module.state_dict().items():
        v = v.detach().cpu().contiguous()
        if v.is_floating_point():
            half = v.to(STORAGE_DTYPE)
            worst = max(worst, float((half.float() - v.float()).abs().max()) if v.numel() else 0.0)
            v = half
        sd[k] = v
    save_safetensors(sd, path, metadata)  # mode 0644: package data, readable by everyone
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path),
            "dtype": str(STORAGE_DTYPE).removeprefix("torch."), "max_abs_rounding": worst}


def read_record(path: str | Path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_record(record: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def shipped_record(preset: TeacherPreset) -> dict:
    """The JSON record of a shipped teacher (package file)."""
    return shipped_json(file_names(preset)["record"])


class _MarginChooser:
    """Greedy choice that remembers the smallest gap between the top two probabilities (a
    reference is only robust to float noise when no step is a near tie)."""

    def __init__(self) -> None:
        self.min_margin = float("inf")

    def __call__(self, step: int, probs: Tensor) -> Tensor:
        top = probs.topk(2, dim=-1).values
        self.min_margin = min(self.min_margin, float((top[..., 0] - top[..., 1]).min()))
        return probs.argmax(dim=-1)


@torch.no_grad()
def reference_outputs(teacher: Teacher, labels: tuple[int, ...] = REFERENCE_LABELS,
                      condition: Condition | None = None) -> dict:
    """Greedy tokens under the teacher's default sampling for fixed labels (or a given
    condition: captions of a text-conditional teacher), and a few numbers of their decoded
    images: what the shipped-weights test reproduces."""
    chooser = _MarginChooser()
    if condition is None:
        condition = Condition(labels=torch.tensor(labels, dtype=torch.long))
    tokens = decode(teacher, condition, teacher.default_sampling, chooser)
    images = teacher.decode_tokens(tokens)
    mid = teacher.image_size // 2
    return {
        "labels": list(labels) if condition.labels is not None else None,
        "greedy_tokens": tokens.tolist(),
        "min_top2_margin": chooser.min_margin,
        "image_sums": images.double().sum(dim=(1, 2, 3)).tolist(),
        "image_row_mid": images[:, 0, mid].tolist(),  # channel 0, middle row
    }
