"""Fixtures of the pairs tests: tiny teachers and small datasets made once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.run import generate_pairs
from ardistill.pairs.verify import verify_pairs
from tiny_teachers import SPECS, load_tiny


@pytest.fixture(scope="session")
def tiny():
    return load_tiny


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory):
    """make(spec, batch_size=..., **settings) -> folder of a finished dataset (made once per
    distinct arguments; copy it before changing it)."""
    made: dict = {}

    def make(spec: str, batch_size: int = 4, captions=None, **kw) -> Path:
        key = (spec, batch_size, str(captions), tuple(sorted(kw.items())))
        if key not in made:
            out = tmp_path_factory.mktemp("pairs") / "ds"
            settings = PairsSettings(**kw)
            generate_pairs(load_tiny(spec), settings, out, captions=captions, spec=SPECS[spec],
                           options=GenOptions(batch_size=batch_size, progress=False))
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def var_ds(dataset_cache) -> Path:
    """tiny-var, 10 samples, shards of 4, micro-batches of 2."""
    return dataset_cache("tiny-var", num=10, seed=3, shard_size=4, micro_batch=2)


@pytest.fixture(scope="session")
def var_digest(var_ds) -> str:
    return verify_pairs(var_ds).digest


@pytest.fixture
def var_copy(var_ds, tmp_path) -> Path:
    """A private copy of `var_ds` to damage."""
    dst = tmp_path / "copy"
    shutil.copytree(var_ds, dst)
    return dst
