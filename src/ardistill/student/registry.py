"""One way to build or load the DD student of any teacher, whatever its family.

Each family module (`ardistill.student.<family>`, the family as `teacher.family` names it)
exposes:
  build_student(teacher, *, generator, device, dtype) -> Student   # initialised from the teacher
  load_student(teacher, checkpoint, *, device, dtype) -> Student   # strict, official key names
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from torch import Tensor

from ardistill.student.base import Student
from ardistill.teachers.base import Teacher


def family_module(teacher: Teacher) -> ModuleType:
    """The student module of `teacher.family`; a clear error when this build has none."""
    family = getattr(teacher, "family", None)
    name = f"ardistill.student.{family}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise ValueError(f"no DD student for the teacher family {family!r} in this build") from e


def build_student(teacher: Teacher, **kwargs) -> Student:
    """The student of `teacher`, initialised from its weights (official `init_with_teacher`
    semantics of the family). kwargs: generator, device, dtype (family extras allowed)."""
    return family_module(teacher).build_student(teacher, **kwargs)


def load_student(teacher: Teacher, checkpoint: str | Path | Mapping[str, Tensor],
                 **kwargs) -> Student:
    """A DD checkpoint (file or state dict, official key names) for `teacher`, loaded strictly.
    kwargs: device, dtype."""
    return family_module(teacher).load_student(teacher, checkpoint, **kwargs)
