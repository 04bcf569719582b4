"""A teacher loaded in bf16 keeps the identity (fingerprint) of its float32 weights, so the
shipped students and pairs datasets of the teacher still load (found when `--dtype auto` picks
bf16: DD sampling refused the shipped student as "trained for another teacher")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ardistill.cli import main
from ardistill.teachers.registry import load_teacher


@pytest.mark.parametrize("spec", ["mnist-llamagen", "mnist-var", "tiny_teachers:tiny_var"])
def test_bf16_teacher_has_the_fp32_fingerprint(spec):
    fp32 = load_teacher(spec)
    bf16 = load_teacher(spec, dtype=torch.bfloat16)
    assert bf16.fingerprint() == fp32.fingerprint()
    other = load_teacher("mnist-var" if spec == "mnist-llamagen" else "mnist-llamagen",
                         dtype=torch.bfloat16)
    assert other.fingerprint() != fp32.fingerprint()


def test_bf16_sampling_uses_the_shipped_student(tmp_path):
    out = {}
    for dtype in ("fp32", "bf16"):
        assert main(["sample", "--teacher", "mnist-var", "--steps", "1", "--num", "8",
                     "--batch-size", "8", "--dtype", dtype, "--no-pngs", "--out",
                     str(tmp_path / dtype)]) == 0
        meta = json.loads((tmp_path / dtype / "sample.json").read_text())
        assert meta["settings"]["models"]["dtype_resolved"] == dtype
        out[dtype] = np.load(tmp_path / dtype / "tokens.npz")["tokens"]
    assert (out["fp32"] == out["bf16"]).mean() > 0.5  # rounding moves a few tokens, not most
