"""`ardistill demo [--out DIR] [--quick]`: the embedded default's main job (docs/demo.md)."""

from __future__ import annotations

import argparse
import shlex
import sys

from ardistill.demo.config import DEFAULT_TEACHERS, DemoConfig
from ardistill.demo.export import export_students
from ardistill.demo.run import run_demo
from ardistill.errors import UserError
from ardistill.teachers.registry import all_presets

HELP = ("the whole method on the shipped MNIST teachers: pairs, 1- and 2-step students, "
        "baselines, FID / agreement / NLL, speed, report (<= 15 min on 2 CPU cores)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    p.add_argument("--out", default="demo_out", help="output folder (default ./demo_out)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for CI (<= 3 minutes): fewer pairs, steps and samples")
    p.add_argument("--teachers", default=",".join(DEFAULT_TEACHERS),
                   help=f"comma-separated shipped teacher presets (default "
                        f"{','.join(DEFAULT_TEACHERS)})")
    p.add_argument("--seed", type=int, default=0, help="pairs seed (evaluation set: seed + 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: fastest on a shared 2-core machine)")
    p.add_argument("--split", choices=("logits", "preset"), default=None,
                   help="DD sampling split: logits = logits head everywhere (default), preset = "
                        "the released split (continuous head after it)")
    p.add_argument("--export-students", action="store_true",
                   help="after the run, copy the EMA students into the package's shipped "
                        "weights (src/ardistill/weights) with a JSON record")
    p.add_argument("--export-dir", default=None,
                   help="where --export-students writes (default: the package's weights folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    base = DemoConfig.quick() if args.quick else DemoConfig.full()
    teachers = tuple(t.strip() for t in args.teachers.split(",") if t.strip())
    cfg = base.replace(out=args.out, teachers=teachers, seed=args.seed, threads=args.threads,
                       progress=not args.no_progress)
    return cfg if args.split is None else cfg.replace(split=args.split)


def _check_teachers(names: tuple[str, ...]) -> None:
    presets = all_presets()
    for n in names:
        if n not in presets or not presets[n].embedded:
            shipped = sorted(k for k, v in presets.items() if v.embedded)
            raise UserError(f"--teachers: {n!r} is not a shipped teacher; the demo runs on "
                           f"{', '.join(shipped)}")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    _check_teachers(cfg.teachers)
    result = run_demo(cfg)
    print()
    print((result.out / "report.md").read_text())
    _print_timings(result.timings)
    print(f"open {result.out / 'report.html'} (the table, the quality-speed plot and the grids)")
    if args.export_students:
        argv = ["ardistill", "demo", *sys.argv[2:]] if sys.argv[1:2] == ["demo"] else None
        command = shlex.join(argv) if argv else f"ardistill demo --out {args.out}"
        for path in export_students(result, cfg, command, args.export_dir):
            print(f"exported {path}")
    return 0


def _print_timings(timings: dict[str, float]) -> None:
    print("timing summary (seconds)")
    for k, v in timings.items():
        print(f"  {k:<28} {v:8.1f}")
