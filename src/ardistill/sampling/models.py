"""Loading what `sample(cfg)` needs: the teacher, the student, the resolved DD settings and the
onestep* marginals. `load_student_file` is the one seam to the student's file format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ardistill.sampling.baselines import token_marginals
from ardistill.sampling.methods import RowMultinomialChooser, sample_teacher
from ardistill.sampling.run import DTYPES, Prepared, SampleConfig, resolve_split, resolve_t_list
from ardistill.sampling.seeds import choice_seeds, sample_labels
from ardistill.student.base import Student
from ardistill.teachers.base import Condition, Teacher
from ardistill.teachers.registry import (
    DDDefaults,
    all_presets,
    load_teacher,
)
from ardistill.utils.checkpoint import CheckpointError

STUDENT_METHODS = ("dd", "teacher-involved")


def load_student_file(teacher: Teacher, path: str | Path, *, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> tuple[Student, dict]:
    """A DD student file (an ardistill export or an official DD checkpoint), loaded strictly
    for `teacher` -> (student, hints). hints: {"t_list": [...], "split": int} when the file
    records them (ardistill exports, docs/training.md), else {}."""
    from ardistill.student.registry import load_student

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"student file not found: {path}")
    hints: dict = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        fp = meta.get("teacher_fingerprint")
        if fp is not None and fp != teacher.fingerprint():
            raise CheckpointError(f"{path}: trained for teacher {meta.get('teacher_name')} "
                                  f"(fingerprint {fp[:12]}), not this {teacher.name}")
        if "t_list" in meta and "split" in meta:
            hints = {"t_list": json.loads(meta["t_list"]), "split": int(meta["split"])}
    return load_student(teacher, path, device=device, dtype=dtype), hints


def default_student_path(teacher_spec: str, steps: int = 1) -> Path:
    """The shipped `steps`-step student of an embedded preset (`zoo.students`, written by
    `ardistill demo --export-students`)."""
    preset = all_presets().get(teacher_spec)
    if preset is None or not preset.embedded:
        raise CheckpointError(f"no shipped DD student for teacher {teacher_spec!r}: give "
                              "--student PATH (an exported student, `ardistill train`)")
    from ardistill.zoo.students import shipped_student

    return shipped_student(teacher_spec, 2 if steps >= 2 else 1)


TeacherLoader = Callable[[str, "str | None", torch.device, torch.dtype], Teacher]


def load_teacher_from_spec(spec: str, tokenizer_ckpt: str | None, device: torch.device,
                           dtype: torch.dtype) -> Teacher:
    """The default `TeacherLoader`: a preset name or a model checkpoint (teachers.registry)."""
    return load_teacher(spec, tokenizer_ckpt=tokenizer_ckpt, device=device, dtype=dtype)


def load_models(cfg: SampleConfig, load: TeacherLoader = load_teacher_from_spec
                ) -> tuple[Teacher, Student | None, dict]:
    """(teacher, student or None when the method needs none, the student file's hints), on
    cfg.device / cfg.dtype. load: how `cfg.teacher` becomes a teacher (tests pass tiny ones)."""
    dtype = DTYPES[cfg.dtype]
    teacher = load(cfg.teacher, cfg.tokenizer_ckpt, torch.device(cfg.device), dtype)
    if cfg.compile and hasattr(teacher, "set_compile"):
        teacher.set_compile(True)  # VAR: compiled blocks in sessions
    if cfg.method not in STUDENT_METHODS:
        return teacher, None, {}
    steps = len(cfg.t_list) if cfg.t_list is not None else cfg.steps
    path = cfg.student if cfg.student is not None else default_student_path(cfg.teacher, steps)
    student, hints = load_student_file(teacher, path, device=cfg.device, dtype=dtype)
    if cfg.compile:
        student = torch.compile(student)
    return teacher, student, hints


def dd_defaults(teacher: Teacher) -> DDDefaults | None:
    preset = all_presets().get(teacher.name)
    return None if preset is None else preset.dd


def prepare(teacher: Teacher, cfg: SampleConfig, dd: DDDefaults | None = None,
            hints: dict | None = None) -> Prepared:
    """Resolved t_list and split (from cfg, else the student file's hints, else the preset's
    DDDefaults), the caption features of a text-conditional teacher and, for onestep*, the
    marginals."""
    prep = Prepared()
    if teacher.num_classes == 0:
        if cfg.captions is None:
            raise ValueError(f"{teacher.name} is text-conditional: give caption features "
                             "(`--captions FILE`, docs/pairs.md)")
        from ardistill.pairs.captions import load_captions

        prep.captions = load_captions(cfg.captions)
    elif cfg.captions is not None:
        raise ValueError(f"{teacher.name} is class-conditional: --captions applies to "
                         "text-conditional teachers only")
    if cfg.method in STUDENT_METHODS:
        dd = dd or dd_defaults(teacher)
        if hints:
            t2 = hints["t_list"][1] if len(hints["t_list"]) > 1 else (dd.t2 if dd else 1)
            dd = DDDefaults(t2=int(t2), split=int(hints["split"]),
                            split_teacher_involved=dd.split_teacher_involved if dd else ())
        if dd is None and (cfg.split is None or (cfg.t_list is None and cfg.method == "dd"
                                                 and cfg.steps != 1)):
            raise ValueError(f"teacher {teacher.name} has no preset DD settings: give split "
                             "and t_list")
        dd = dd or DDDefaults(t2=1, split=int(cfg.split))
        prep.t_list, prep.split = resolve_t_list(cfg, dd), resolve_split(cfg, dd)
    if cfg.method == "onestep":
        prep.marginals = estimate_marginals(teacher, cfg, prep.captions)
    return prep


def estimate_marginals(teacher: Teacher, cfg: SampleConfig, captions=None) -> torch.Tensor:
    """onestep* marginals (N, V): from the pairs dataset `cfg.marginals` (its teacher must be
    this one) or from `cfg.marginal_samples` fresh multinomial teacher samples (balanced
    classes, or the caption rows i mod R of `captions` for a text-conditional teacher)."""
    if cfg.marginals is not None:
        from ardistill.pairs.dataset import PairsDataset

        ds = PairsDataset(cfg.marginals)
        if ds.teacher_fingerprint != teacher.fingerprint():
            raise ValueError(f"{cfg.marginals}: pairs of another teacher than {teacher.name}")
        tokens = torch.from_numpy(ds.read(np.arange(len(ds)))["tokens"])
        return token_marginals(tokens, teacher.vocab_size)
    device = teacher.dd_codebook().device
    chunks = []
    for first in range(0, cfg.marginal_samples, cfg.batch_size):
        index = np.arange(first, min(cfg.marginal_samples, first + cfg.batch_size))
        if captions is not None:
            from ardistill.pairs.seeds import caption_rows

            cond = captions.condition(caption_rows(index, captions.rows)).to(device)
        else:
            labels = sample_labels(cfg.seed, index, "balanced",
                                   list(range(teacher.num_classes)))
            cond = Condition(labels=labels.to(device))
        choose = RowMultinomialChooser(choice_seeds(cfg.seed, index, b"marginals").tolist())
        chunks.append(sample_teacher(teacher, cond, choose).cpu())
    return token_marginals(torch.cat(chunks), teacher.vocab_size)
