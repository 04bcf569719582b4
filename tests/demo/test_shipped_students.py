"""Where the shipped students live (`ardistill.weights`) and how `ardistill sample` finds them."""

from __future__ import annotations

import pytest

from ardistill.errors import CheckpointError
from ardistill.sampling.run import default_student_path
from ardistill.weights import shipped_dir, student_file, student_file_name, student_record_name


def test_file_names():
    assert student_file_name("mnist-llamagen", 1) == "mnist_llamagen_dd1-1step.safetensors"
    assert student_file_name("mnist-var", 2) == "mnist_var_dd1-2step.safetensors"
    assert student_file_name("mnist-var", 1, "dd2") == "mnist_var_dd2-1step.safetensors"
    assert student_record_name("mnist-var") == "mnist_var_students.json"
    assert shipped_dir().name == "weights"
    with pytest.raises(ValueError, match="steps"):
        student_file_name("mnist-var", 3)
    with pytest.raises(ValueError, match="dd2"):
        student_file_name("mnist-var", 2, "dd2")


def test_missing_student_is_a_clear_error():
    with pytest.raises(CheckpointError,
                       match="no shipped 1-step DD1 student of mnist-nothing.*--student PATH"):
        student_file("mnist-nothing", 1)


def test_sample_resolution_goes_through_the_weights_registry():
    with pytest.raises(CheckpointError, match="--student PATH"):
        default_student_path("llamagen-b", 1)  # not an embedded preset
    for steps in (1, 2):
        name = student_file_name("mnist-llamagen", steps)
        if (shipped_dir() / name).is_file():
            assert default_student_path("mnist-llamagen", steps).name == name
        else:
            with pytest.raises(CheckpointError, match=name):
                default_student_path("mnist-llamagen", steps)
