"""Student files: the export of trained students (EMA weights) and the one way to load a
student file back, whether an ardistill export or a released DD checkpoint.

    export_student(ema_student, "run/student.safetensors", teacher, t_list=(0,), split=20)
    ts = load_trained_student("run/student.safetensors")     # teacher from the metadata
    x = few_step(ts.student, noise, cond, ts.t_list, ts.split, ts.teacher.dd_codebook())
    student, hints = load_student_file(teacher, path)        # any student file, for `teacher`

The file is a safetensors state dict with the official DD key names of the family (so
`ardistill.student.registry.load_student(teacher, path)` reads it too) and string metadata:
format / format_version, family, teacher_name, teacher_spec (how to load it), teacher_fingerprint
(its identity: checked on load), t_list (JSON: the timesteps it was trained for), split,
student_config (JSON, informational), train (JSON: steps, recipe fields).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ardistill.errors import CheckpointError
from ardistill.student.base import Student
from ardistill.student.registry import load_student
from ardistill.teachers.base import Teacher
from ardistill.teachers.registry import load_teacher
from ardistill.utils.safetensors_io import save_safetensors

FORMAT = "ardistill-dd-student"
FORMAT_VERSION = "1"


@dataclass
class TrainedStudent:
    """A loaded student with what sampling needs: its teacher (codebook, decoder), the
    timesteps it was trained for and the split; meta: the file's raw metadata."""

    student: Student
    teacher: Teacher
    t_list: tuple[int, ...]
    split: int
    meta: dict


def _json_default(o):
    if is_dataclass(o):
        return asdict(o)
    if isinstance(o, torch.dtype):
        return str(o)
    return str(o)


def export_student(student: nn.Module, path: str | Path, teacher: Teacher, *,
                   t_list: tuple[int, ...], split: int, spec: str | None = None,
                   train_info: dict | None = None, dd_choice: str | None = None) -> Path:
    """Write `student`'s state dict (float32, CPU) with the metadata above; atomic. dd_choice:
    the token choice the student was trained to sample with ("flow" from DD2 training with
    the flow choice), recorded for `sample --dd-choice auto`."""
    path = Path(path)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in student.state_dict().items()}
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    cfg = getattr(student, "config", None)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "family": teacher.family, "teacher_name": teacher.name,
        "teacher_spec": spec or teacher.name,
        "teacher_fingerprint": teacher.fingerprint(),
        "t_list": json.dumps([int(t) for t in t_list]), "split": str(int(split)),
        "student_config": json.dumps(cfg, default=_json_default),
        "train": json.dumps(train_info or {}, default=_json_default),
    }
    if dd_choice is not None:
        meta["dd_choice"] = dd_choice
    return save_safetensors(sd, path, meta, mode=None)


def _safetensors_metadata(path: Path) -> dict:
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from e


def read_export_metadata(path: str | Path) -> dict:
    """The metadata of an exported student (CheckpointError when it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported student not found: {path}")
    meta = _safetensors_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an exported ardistill student (metadata format "
                              f"{meta.get('format')!r}); released DD checkpoints load with "
                              "ardistill.student.registry.load_student(teacher, path)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: student format version {meta.get('format_version')}, "
                              f"this ardistill reads {FORMAT_VERSION}")
    return meta


def load_trained_student(path: str | Path, teacher: Teacher | None = None, *,
                         device: torch.device | str = "cpu",
                         dtype: torch.dtype = torch.float32) -> TrainedStudent:
    """An exported student, loaded strictly. teacher: None loads `teacher_spec` from the
    metadata with `load_teacher`; a given teacher must have the recorded fingerprint."""
    meta = read_export_metadata(path)
    if teacher is None:
        teacher = load_teacher(meta["teacher_spec"], device=device)
    fp = teacher.fingerprint()
    if fp != meta["teacher_fingerprint"]:
        raise CheckpointError(
            f"{path}: trained for teacher {meta['teacher_name']} (fingerprint "
            f"{meta['teacher_fingerprint'][:12]}), given {teacher.name} ({fp[:12]})")
    student = load_student(teacher, path, device=device, dtype=dtype)
    return TrainedStudent(student, teacher, tuple(json.loads(meta["t_list"])),
                          int(meta["split"]), meta)


def load_student_file(teacher: Teacher, path: str | Path, *, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> tuple[Student, dict]:
    """A DD student file (an ardistill export or an official DD checkpoint), loaded strictly
    for `teacher` -> (student, hints). hints: {"t_list": [...], "split": int} when the file
    records them (ardistill exports, docs/training.md), plus "dd_choice" (argmax | flow) and
    "dd_temperature" when the file recommends how its logits become tokens (shipped students),
    else {}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"student file not found: {path}")
    hints: dict = {}
    if path.suffix == ".safetensors":
        meta = _safetensors_metadata(path)
        fp = meta.get("teacher_fingerprint")
        if fp is not None and fp != teacher.fingerprint():
            raise CheckpointError(f"{path}: trained for teacher {meta.get('teacher_name')} "
                                  f"(fingerprint {fp[:12]}), not this {teacher.name}")
        if "t_list" in meta and "split" in meta:
            hints = {"t_list": json.loads(meta["t_list"]), "split": int(meta["split"])}
        if meta.get("dd_choice") in ("argmax", "flow"):
            hints["dd_choice"] = meta["dd_choice"]
        if "dd_temperature" in meta:
            try:
                hints["dd_temperature"] = float(meta["dd_temperature"])
            except ValueError as e:
                raise CheckpointError(f"{path}: dd_temperature {meta['dd_temperature']!r} "
                                      "is not a number") from e
    return load_student(teacher, path, device=device, dtype=dtype), hints
