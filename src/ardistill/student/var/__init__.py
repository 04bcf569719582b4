"""The DD student for VAR teachers: network (`model.py`), construction and strict loading
(`build.py`), released sampling settings (`presets.py`)."""

from ardistill.student.var.build import (
    build_student,
    init_from_teacher,
    load_student,
    load_student_state,
    student_config_of,
    unwrap_dd_checkpoint,
)
from ardistill.student.var.model import (
    ContinuousHead,
    VARStudent,
    VARStudentConfig,
    dd_level_buffers,
)
from ardistill.student.var.presets import TEACHER_INVOLVED, TeacherInvolvedRecipe

__all__ = [
    "TEACHER_INVOLVED",
    "ContinuousHead",
    "TeacherInvolvedRecipe",
    "VARStudent",
    "VARStudentConfig",
    "build_student",
    "dd_level_buffers",
    "init_from_teacher",
    "load_student",
    "load_student_state",
    "student_config_of",
    "unwrap_dd_checkpoint",
]
