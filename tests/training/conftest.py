"""Fixtures of the training tests: tiny teachers (tests/tiny_teachers.py) and small pairs
datasets made once per session; one intra-op thread (fast and reproducible on CPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.run import generate_pairs
from tiny_teachers import SPECS, load_tiny

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_helpers


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pairs_cache(tmp_path_factory):
    made: dict = {}

    def make(spec: str, num: int = 64) -> Path:
        if (spec, num) not in made:
            out = tmp_path_factory.mktemp("pairs") / spec
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            generate_pairs(load_tiny(spec), PairsSettings(num=num, seed=1, shard_size=32,
                                                          micro_batch=16), out,
                           spec=SPECS[spec], options=GenOptions(batch_size=32, progress=False))
            torch.set_num_threads(before)
            made[(spec, num)] = out
        return made[(spec, num)]

    return make


@pytest.fixture
def tiny():
    return load_tiny
