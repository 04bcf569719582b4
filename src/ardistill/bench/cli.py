"""`ardistill bench TARGET`: each benchmark lives in its own module with `add_args` and `run`."""

from __future__ import annotations

import argparse
import importlib

# target name -> module exposing `add_args(parser)` and `run(args) -> int`
BENCH_TARGETS: dict[str, str] = {
    "sample": "ardistill.bench.sample",
    "teacher": "ardistill.bench.teacher",
    "student": "ardistill.bench.student",
    "pairs": "ardistill.bench.pairs",
    "flow": "ardistill.bench.flow",
    "train": "ardistill.bench.train",
}


DEFAULT_TARGET = "sample"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (prints numbers; see README)")
    # `ardistill bench` alone runs the default target, `sample`, with its options.
    default = importlib.import_module(BENCH_TARGETS[DEFAULT_TARGET])
    default.add_args(p)
    p.set_defaults(func=default.run)
    targets = p.add_subparsers(dest="bench_target", metavar="TARGET")
    for name, mod_name in BENCH_TARGETS.items():
        mod = importlib.import_module(mod_name)
        tp = targets.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0])
        mod.add_args(tp)
        tp.set_defaults(func=mod.run)
