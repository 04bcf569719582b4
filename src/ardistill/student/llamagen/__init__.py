"""The DD student for LlamaGen teachers: network (`model.py`) and construction (`build.py`)."""

from ardistill.student.llamagen.build import (
    build_student,
    init_from_teacher,
    load_student,
    load_student_state,
    student_config_of,
)
from ardistill.student.llamagen.model import ContinuousHead, LlamaGenStudent, LlamaGenStudentConfig

__all__ = [
    "ContinuousHead",
    "LlamaGenStudent",
    "LlamaGenStudentConfig",
    "build_student",
    "init_from_teacher",
    "load_student",
    "load_student_state",
    "student_config_of",
]
