"""How often bf16 inference gives the same tokens as fp32, on the shipped teachers and students.

    python scripts/dtype_agreement.py [--num 256] [--seed 0] [--threads 1]

For each embedded teacher and method (teacher with multinomial sampling, DD 1-step, DD 2-step,
each with its shipped student and `--dd-choice auto`), samples the same noise, labels and
per-sample seeds in fp32 and in bf16 (`ardistill sample --dtype ...`) and prints the fraction
of equal tokens and of identical sequences. An AR teacher diverges after its first differing
token (the rest of the sequence follows another prefix), so its sequence agreement is the
strict number; a DD student decides all tokens at once.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from ardistill.cli import main as ardistill


def tokens(teacher: str, method: list[str], dtype: str, num: int, seed: int, out: Path):
    rc = ardistill(["sample", "--teacher", teacher, *method, "--num", str(num), "--batch-size",
                    str(min(num, 128)), "--seed", str(seed), "--dtype", dtype, "--no-pngs",
                    "--out", str(out)])
    if rc != 0:
        raise SystemExit(f"sample failed ({rc})")
    return np.load(out / "tokens.npz")["tokens"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = {"teacher": ["--method", "teacher"], "DD 1-step": ["--steps", "1"],
               "DD 2-step": ["--steps", "2"]}
    lines = ["| teacher | method | tokens equal | sequences equal |", "|---|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for teacher in ("mnist-llamagen", "mnist-var"):
            for name, m in methods.items():
                a = tokens(teacher, m, "fp32", args.num, args.seed, Path(tmp) / "a")
                b = tokens(teacher, m, "bf16", args.num, args.seed, Path(tmp) / "b")
                lines.append(f"| {teacher} | {name} | {(a == b).mean():.4f} | "
                             f"{(a == b).all(axis=1).mean():.4f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
