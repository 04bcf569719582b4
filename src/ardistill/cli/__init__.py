"""The `ardistill` command line: one subcommand per capability, all argument parsing here.

Each module of this package defines `register(subparsers)` for its subcommands; a
subcommand's function parses nothing itself: it builds the capability's config from the
namespace and calls the capability's one entry point (`sample(cfg)`, `train(cfg)`, ...).
Errors the user can fix (`ardistill.errors.USER_ERRORS`) end as `ardistill: error: ...` with
exit code 2 and no traceback (`ARDISTILL_TRACEBACK=1` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys

from ardistill import __version__
from ardistill.cli import (
    app,
    bench,
    captions,
    demo,
    evaluate,
    pairs,
    report,
    sample,
    train,
    zoo,
)
from ardistill.errors import USER_ERRORS, message

# Modules that contribute subcommands, in the order `ardistill --help` shows them.
COMMANDS = (bench, demo, pairs, captions, sample, evaluate, train, report, zoo, app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ardistill",
        description="Distilled Decoding: one- and two-step sampling for image AR models.",
    )
    parser.add_argument("--version", action="version", version=f"ardistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("ARDISTILL_TRACEBACK"):
            raise
        print(f"ardistill: error: {message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ardistill: interrupted", file=sys.stderr)
        return 130
