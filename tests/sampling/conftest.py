"""Fixtures of the sampling tests: the tiny teachers of tests/pairs and their students."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from ardistill.student.registry import build_student
from tiny_teachers import load_tiny


@functools.cache
def tiny_student(spec: str):
    return build_student(load_tiny(spec), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def tiny():
    return load_tiny


@pytest.fixture(scope="session")
def student():
    return tiny_student


@pytest.fixture(scope="session")
def student_file(tmp_path_factory):
    """spec -> a safetensors file of the tiny student (official key names)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("students")

    @functools.cache
    def make(spec: str) -> Path:
        sd = {k: v.detach().float().contiguous() for k, v in
              tiny_student(spec).state_dict().items()}
        path = root / f"{spec}.safetensors"
        save_file(sd, str(path))
        return path

    return make
