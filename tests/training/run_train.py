"""`ardistill train` with the tiny test teachers, for subprocess / torchrun tests:
`python tests/training/run_train.py --teacher tiny-var --pairs P --out RUN ...` (train flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pairs"))

from tiny_teachers import load_tiny  # noqa: E402

from ardistill.cli import CLIError  # noqa: E402
from ardistill.train_cli import add_args, train_command  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_train")
    add_args(parser)
    args = parser.parse_args(argv)
    try:
        return train_command(args, load=lambda spec, *a: load_tiny(args.teacher or spec))
    except CLIError as e:
        print(f"ardistill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
