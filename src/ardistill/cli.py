"""The `ardistill` command line: one subcommand per capability.

Each capability module exposes `register(subparsers)`, which adds its subparser and sets
`func` (a callable taking the parsed namespace and returning an exit code). This file only
lists those modules; a subcommand appears here when its capability is real.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order `ardistill --help` shows them.
COMMAND_MODULES: list[str] = [
    "ardistill.bench.cli",
    "ardistill.demo.cli",
    "ardistill.pairs.cli",
    "ardistill.sampling.cli",
    "ardistill.sampling.eval_cli",
    "ardistill.train_cli",
    "ardistill.sampling.report",
    "ardistill.zoo.cli",
    "ardistill.zoo.teacher_cli",
]


class CLIError(Exception):
    """A user-facing error: printed as `ardistill: error: ...` with exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ardistill",
        description="Distilled Decoding: one- and two-step sampling for image AR models.",
    )
    from ardistill import __version__

    parser.add_argument("--version", action="version", version=f"ardistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"ardistill: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ardistill: interrupted", file=sys.stderr)
        return 130
