"""Where the shipped students live and how `ardistill sample` resolves them (zoo.students)."""

from __future__ import annotations

import pytest

from ardistill.sampling.models import default_student_path
from ardistill.utils.checkpoint import CheckpointError
from ardistill.zoo.students import (
    record_file_name,
    shipped_student,
    shipped_weights_dir,
    student_file_name,
)


def test_file_names():
    assert student_file_name("mnist-llamagen", 1) == "mnist_llamagen_dd1.safetensors"
    assert student_file_name("mnist-var", 2) == "mnist_var_dd2.safetensors"
    assert record_file_name("mnist-var") == "mnist_var_students.json"
    assert shipped_weights_dir().name == "weights"
    with pytest.raises(ValueError, match="steps"):
        student_file_name("mnist-var", 3)


def test_missing_student_is_a_clear_error():
    with pytest.raises(CheckpointError, match="no shipped 1-step DD student.*demo"):
        shipped_student("mnist-nothing", 1)


def test_sample_resolution_goes_through_the_zoo():
    with pytest.raises(CheckpointError, match="--student PATH"):
        default_student_path("llamagen-b", 1)  # not an embedded preset
    for steps in (1, 2):
        name = student_file_name("mnist-llamagen", steps)
        if (shipped_weights_dir() / name).is_file():
            assert default_student_path("mnist-llamagen", steps).name == name
        else:
            with pytest.raises(CheckpointError, match=name):
                default_student_path("mnist-llamagen", steps)
