"""torchrun with 2 processes (gloo on CPU) makes the same dataset as one process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ardistill.errors import RankError
from ardistill.pairs.verify import verify_pairs
from ardistill.utils.dist import DistContext


def torchrun(nproc: int, args: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "ardistill", "gen-pairs", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_make_the_same_dataset(tmp_path, cli_env, var_digest):
    out = tmp_path / "ds"
    args = ["--teacher", "tiny_teachers:tiny_var", "--num-samples", "10", "--seed", "3",
            "--shard-size", "4", "--micro-batch", "2", "--batch-size", "4", "--no-progress",
            "--out", str(out)]
    res = torchrun(2, args, cli_env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("complete, manifest written") == 1  # rank 0 only
    assert verify_pairs(out).digest == var_digest
    envs = {r["env"]["device"] for r in
            (__import__("json").loads(p.read_text()) for p in out.glob("shard-*.json"))}
    assert envs == {"cpu"}


@pytest.mark.slow
def test_setup_errors_reach_every_rank(var_ds, tmp_path, cli_env):
    dst = tmp_path / "ds"
    dst.mkdir()
    (dst / "foreign.txt").write_text("x")
    args = ["--teacher", "tiny_teachers:tiny_var", "--num-samples", "10", "--micro-batch", "2",
            "--shard-size", "4", "--no-progress", "--out", str(dst)]
    res = torchrun(2, args, cli_env)
    assert res.returncode != 0
    assert "not empty" in res.stderr and "rank 0 failed" in res.stderr


def test_single_process_context():
    ctx = DistContext()
    assert ctx.on_main(lambda: 5) == 5 and ctx.gather_to_main(1) == [1]
    ctx.barrier()
    with pytest.raises(ZeroDivisionError):
        ctx.on_main(lambda: 1 / 0)
    assert issubclass(RankError, RuntimeError)
