"""`--dtype auto`: bf16 where bf16 matmul units exist and measure faster, fp32 elsewhere; both
outcomes of the probe, the override, and the commands that default to it."""

from __future__ import annotations

import pytest
import torch

from ardistill.cli import build_parser
from ardistill.utils import dtypes
from ardistill.utils.dtypes import Probe, choose


@pytest.mark.parametrize("probe, want", [
    (Probe("cpu", True, ("amx", "avx512_bf16"), 3.1), "bf16"),      # AMX Xeon
    (Probe("cpu", True, ("avx512_bf16",), 1.6), "bf16"),
    (Probe("cpu", True, ("avx512_bf16",), 0.9), "fp32"),            # units, but not faster
    (Probe("cpu", False, (), None), "fp32"),                         # AVX2-only EPYC
    (Probe("cuda", True, (), None), "bf16"),
    (Probe("cuda", False, (), None), "fp32"),
])
def test_choice_for_each_machine(probe, want):
    name, reason = choose(probe)
    assert name == want and reason


def test_override_and_resolution(monkeypatch):
    dtypes.auto_name.cache_clear()
    try:
        monkeypatch.setenv(dtypes.AUTO_ENV, "bf16")
        assert dtypes.resolve("auto") == torch.bfloat16
        dtypes.auto_name.cache_clear()
        monkeypatch.setenv(dtypes.AUTO_ENV, "auto")
        with pytest.raises(ValueError, match="must name a dtype"):
            dtypes.resolve("auto")
    finally:
        dtypes.auto_name.cache_clear()
    assert dtypes.resolve("float32") == torch.float32
    with pytest.raises(ValueError, match="auto is an inference dtype"):
        dtypes.long_name("auto")


def test_probe_of_this_machine_is_consistent(monkeypatch, capsys):
    """Without the override, the probe decides from this CPU's features and logs why."""
    monkeypatch.delenv(dtypes.AUTO_ENV, raising=False)
    dtypes.auto_name.cache_clear()
    try:
        name = dtypes.auto_name("cpu")
        err = capsys.readouterr().err
        assert f"--dtype auto -> {name} on cpu" in err
        feats = dtypes.cpu_bf16_features()
        if not feats:
            assert name == "fp32"
        assert dtypes.auto_name("cpu") == name and capsys.readouterr().err == ""  # once
    finally:
        dtypes.auto_name.cache_clear()


def test_bf16_speedup_is_a_positive_ratio():
    assert dtypes.bf16_speedup(n=64, reps=2) > 0


@pytest.mark.parametrize("argv", [["sample", "--teacher", "x", "--out", "o"], ["app"],
                                  ["bench", "sample"], ["bench", "student"],
                                  ["bench", "teacher"]])
def test_inference_commands_default_to_auto(argv):
    assert build_parser().parse_args(argv).dtype == "auto"


def test_pair_generation_keeps_fp32():
    args = build_parser().parse_args(["gen-pairs", "--teacher", "x", "--num", "1", "--out", "o"])
    assert args.dtype == "fp32"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gen-pairs", "--teacher", "x", "--num", "1", "--out", "o",
                                   "--dtype", "auto"])
