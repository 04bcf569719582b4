"""Shared fixtures: the oracle pack, the repository root, CLI subprocess environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# `--dtype auto` (the inference default) picks bf16 on AMX / avx512_bf16 CPUs: the suite pins
# fp32 so that its exact comparisons hold on every machine (tests/test_dtypes_auto.py covers
# both choices of the probe).
os.environ.setdefault("ARDISTILL_AUTO_DTYPE", "fp32")


def oracle_dir() -> Path:
    """The oracle pack: $ARDISTILL_ORACLE_DIR, default ../shared/oracle beside the repository."""
    env = os.environ.get("ARDISTILL_ORACLE_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "oracle")


@pytest.fixture(scope="session")
def oracle() -> Path:
    d = oracle_dir()
    if not (d / "llamagen").is_dir() or not (d / "var").is_dir():
        pytest.fail(f"oracle pack not found at {d} (set ARDISTILL_ORACLE_DIR)")
    return d


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment for running `python -m ardistill` / torchrun in a subprocess on this tree."""
    env = dict(os.environ)
    paths = os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])  # tests: tiny_teachers
    env["PYTHONPATH"] = paths + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
