"""torchrun with 2 CPU processes (gloo) equals 1 process at the same global batch; the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import debug_cfg

from ardistill.cli import main
from ardistill.training import train
from ardistill.training.state import list_checkpoints, load_checkpoint


def _args(pairs: Path, out: Path) -> list[str]:
    return ["train", "--teacher", "tiny_teachers:tiny_var", "--pairs", str(pairs), "--out",
            str(out), "--recipe", "debug", "--timesteps", "0,1", "--split", "2", "--holdout", "16",
            "--eval-samples", "16", "--steps", "6", "--batch-size", "8", "--threads", "1",
            "--no-progress"]


def _losses(run: Path) -> list[float]:
    recs = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if "loss" in r]


@pytest.mark.slow
def test_two_processes_equal_one(pairs_cache, tiny, tmp_path, cli_env):
    pairs = pairs_cache("tiny-var")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ardistill", *_args(pairs, tmp_path / "ddp")]
    res = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("EMA student exported") == 1  # rank 0 only
    one = train(debug_cfg(pairs, tmp_path / "one", steps=6, batch_size=8), teacher=tiny("tiny-var"))
    ddp = _losses(tmp_path / "ddp")
    assert ddp == pytest.approx(one.losses, rel=1e-5)
    a = load_checkpoint(list_checkpoints(tmp_path / "ddp")[-1][1])["model"]
    b = load_checkpoint(list_checkpoints(tmp_path / "one")[-1][1])["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)


def test_cli_trains_and_reports(pairs_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*_args(pairs_cache("tiny-var"), out), "--tensorboard"]) == 0
    printed = capsys.readouterr()
    assert "held-out agree_1step" in printed.out and (out / "student.safetensors").is_file()
    assert any((out / "tb").iterdir())
    assert main(_args(tmp_path / "nope", tmp_path / "run2")) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([*_args(pairs_cache("tiny-var"), tmp_path / "run3"), "--timesteps", "0,x"]) == 2
    assert "--timesteps" in capsys.readouterr().err
