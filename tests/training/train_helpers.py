"""Helpers of the training tests (a unique module name: tests/pairs has a conftest too)."""

from __future__ import annotations

from pathlib import Path

from ardistill.training import recipe


def debug_cfg(pairs: Path, out: Path, **kw):
    """The debug recipe on a tiny teacher (timesteps {0, 1}, split 2: teacher of no preset)."""
    base = dict(pairs=str(pairs), out=str(out), timesteps=(0, 1), split=2, holdout=16,
                eval_samples=16)
    return recipe("debug", **{**base, **kw})
