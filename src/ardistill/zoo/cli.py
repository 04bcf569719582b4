"""`ardistill zoo COMMAND`: recipes that (re)build the weights shipped inside ardistill.

Each subcommand lives in a module with `add_args(parser)`, `run(args) -> int` and optionally
`ZOO_HELP` (its one-line help), listed in `ZOO_COMMANDS` (the pattern of `ardistill bench`).
"""

from __future__ import annotations

import argparse
import importlib

# subcommand name -> module exposing `add_args(parser)` and `run(args) -> int`
ZOO_COMMANDS: dict[str, str] = {
    "train-features": "ardistill.zoo.features",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="rebuild the embedded default's shipped weights")
    cmds = p.add_subparsers(dest="zoo_command", metavar="COMMAND")
    cmds.required = True
    for name, mod_name in ZOO_COMMANDS.items():
        mod = importlib.import_module(mod_name)
        help_text = getattr(mod, "ZOO_HELP", None) or (mod.__doc__ or "").strip().splitlines()[0]
        cp = cmds.add_parser(name, help=help_text)
        mod.add_args(cp)
        cp.set_defaults(func=mod.run)
