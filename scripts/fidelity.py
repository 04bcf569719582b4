"""The fidelity protocol: a teacher and its DD students sampled and evaluated the same way.

    python scripts/fidelity.py --teacher mnist-llamagen --out runs/fid-ml \
        [--student 1=FILE] [--student 2=FILE] [--student dd2=FILE] [--num 2000] [--seed 11]

For each method: `ardistill sample --teacher T --method teacher | --steps 1 | --steps 2
--num 2000 --seed 11 --no-pngs --out OUT/<method>`, then `ardistill eval OUT/<method>/samples.npz
--ref mnist`; the teacher's samples are made once and reused when OUT/teacher exists with the
same settings. Prints a markdown table (FID +- bootstrap std, ratio to the teacher, precision,
recall and its ratio, class accuracy) and writes OUT/fidelity.json. A student given as
`1=FILE` / `2=FILE` is sampled with 1 / 2 DD steps, `dd2=FILE` as a DD2 1-step student;
without --student the shipped DD1 students are used. Every number of docs/fidelity.md comes
from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ardistill.cli import main as ardistill


def _run(argv: list[str]) -> None:
    rc = ardistill(argv)
    if rc != 0:
        raise SystemExit(f"fidelity: `ardistill {' '.join(argv)}` failed ({rc})")


def sample_and_eval(teacher: str, method: list[str], out: Path, num: int, seed: int,
                    threads: int) -> dict:
    """Sample (unless OUT already holds the same run) and evaluate; -> the eval record."""
    meta = out / "sample.json"
    argv = ["sample", "--teacher", teacher, *method, "--num", str(num), "--seed", str(seed),
            "--batch-size", "250", "--no-pngs", "--out", str(out)]
    t0 = time.perf_counter()
    if not (meta.is_file() and json.loads(meta.read_text())["num"] == num
            and json.loads(meta.read_text())["settings"]["seed"] == seed):
        _run(argv)
    seconds = time.perf_counter() - t0
    _run(["eval", str(out / "samples.npz"), "--ref", "mnist", "--no-progress"])
    rec = json.loads((out / "samples.eval.json").read_text())
    if "prompt_accuracy" in rec:  # a prompted run: the class column is the prompt accuracy
        rec["class_accuracy"] = rec["prompt_accuracy"]
    rec["command"] = "ardistill " + " ".join(argv)
    rec["sample_seconds"] = round(seconds, 1)
    rec["label"] = json.loads(meta.read_text())["label"]
    return rec


def table(rows: dict[str, dict]) -> str:
    t = rows["teacher"]
    lines = ["| method | FID | FID / teacher | precision | recall | recall / teacher | "
             "class acc. |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows.values():
        lines.append(
            f"| {r['label']} | {r['fid']:.3f} +- {r['fid_std']:.3f} | "
            f"{r['fid'] / t['fid']:.2f}x | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['recall'] / t['recall']:.2f}x | {r['class_accuracy']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--student", action="append", default=[], metavar="STEPS=FILE",
                   help="1=FILE, 2=FILE or dd2=FILE (default: the shipped DD1 students)")
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--dd-choice", default="auto", help="auto (default: what a user gets: "
                   "each student file's recorded choice) | argmax | flow (ardistill sample "
                   "--dd-choice); with argmax or flow the DD rows are named dd1-argmax, ...")
    p.add_argument("--dd-temperature", type=float, default=None,
                   help="the flow choice's temperature (ardistill sample --dd-temperature); "
                   "the DD rows get a -tT suffix")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--prompts", type=Path, default=None,
                   help="text-conditional teachers: the prompts file every method samples "
                   "(sample i takes row i mod R; class acc. is then the prompt accuracy)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    students = dict(s.split("=", 1) for s in args.student) or {"1": None, "2": None}
    methods = {"teacher": ["--method", "teacher"]}
    suffix = "" if args.dd_choice == "auto" else f"-{args.dd_choice}"
    temp = [] if args.dd_temperature is None else ["--dd-temperature", str(args.dd_temperature)]
    suffix += "" if args.dd_temperature is None else f"-t{args.dd_temperature:g}"
    for steps, path in students.items():
        head = ["--method", "dd2"] if steps == "dd2" else ["--steps", steps]
        name = "dd2-1step" if steps == "dd2" else f"dd{steps}"
        methods[f"{name}{suffix}"] = (head + ["--dd-choice", args.dd_choice] + temp
                                      + (["--student", path] if path else []))
    extra = [] if args.prompts is None else ["--prompts", str(args.prompts)]
    rows = {}
    for name, m in methods.items():
        rows[name] = sample_and_eval(args.teacher, m + extra, args.out / name, args.num,
                                     args.seed, args.threads or 0)
    md = table(rows)
    print(md)
    (args.out / "fidelity.json").write_text(json.dumps(
        {"teacher": args.teacher, "num": args.num, "seed": args.seed, "rows": rows,
         "command": "python scripts/fidelity.py " + " ".join(sys.argv[1:])}, indent=1) + "\n")
    (args.out / "fidelity.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
