"""Fixtures of the training tests: tiny teachers (tests/pairs/tiny_teachers.py) and small
pairs datasets made once per session; one intra-op thread (fast and reproducible on CPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

PAIRS_TESTS = Path(__file__).resolve().parents[1] / "pairs"
sys.path.insert(0, str(PAIRS_TESTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_teachers import load_tiny  # noqa: E402

from ardistill.pairs.config import GenOptions, PairsSettings  # noqa: E402
from ardistill.pairs.run import generate_pairs  # noqa: E402


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
                           options=GenOptions(batch_size=32, progress=False))
            torch.set_num_threads(before)
            made[(spec, num)] = out
        return made[(spec, num)]

    return make


@pytest.fixture
def tiny():
    return load_tiny
