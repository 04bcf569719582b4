"""Run 2-process torchrun jobs of `ardistill gen-pairs` and `ardistill train` many times in a row
and count the ones that did not exit 0 (a clean process-group teardown never fails).

    PYTHONPATH=src:tests python scripts/stress_torchrun.py --runs 50 [--what pairs,train]

Each job uses the tiny VAR teacher of the tests (tests/tiny_teachers.py); gen-pairs writes 8
samples into a fresh folder, train runs 2 steps on a pairs set made once. Prints one line per
job and a summary; exits 1 when any job failed (with its last stderr lines).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(REPO / "tests")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def torchrun(args: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ardistill", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def pairs_args(out: Path, num: int = 8) -> list[str]:
    return ["gen-pairs", "--teacher", "tiny_teachers:tiny_var", "--num-samples", str(num),
            "--micro-batch", "2", "--shard-size", "2", "--batch-size", "2", "--no-progress",
            "--out", str(out)]


def train_args(pairs: Path, out: Path) -> list[str]:
    return ["train", "--pairs", str(pairs), "--out", str(out), "--recipe", "debug",
            "--timesteps", "0,1", "--split", "2", "--holdout", "4", "--eval-samples", "4",
            "--steps", "2", "--batch-size", "4", "--threads", "1", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--what", default="pairs,train")
    args = p.parse_args(argv)
    env = _env()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / "pairs-base"
        if "train" in args.what:
            res = subprocess.run([sys.executable, "-m", "ardistill", *pairs_args(base, 32)],
                                 env=env, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                print(res.stderr[-2000:], file=sys.stderr)
                return 1
        for what in [w for w in args.what.split(",") if w]:
            for i in range(args.runs):
                t0 = time.perf_counter()
                out = root / f"{what}-{i}"
                res = torchrun(pairs_args(out) if what == "pairs" else train_args(base, out),
                               env)
                ok = res.returncode == 0
                print(f"{what} {i + 1}/{args.runs}: exit {res.returncode} "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
                if not ok:
                    failures.append((what, i, res.returncode, res.stderr[-1500:]))
    for what, i, rc, err in failures:
        print(f"--- {what} run {i + 1} exited {rc}:\n{err}", file=sys.stderr)
    print(f"{len(failures)} of {args.runs * len(args.what.split(','))} jobs failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
