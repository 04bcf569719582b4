"""`ardistill gen-pairs` with the tiny test teachers, for subprocess and torchrun tests:
`python tests/pairs/run_tiny.py --teacher tiny-var --num 16 --out DIR ...` (gen-pairs flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_teachers import load_tiny  # noqa: E402

from ardistill.pairs.cli import add_gen_args, gen_pairs_command  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_tiny")
    add_gen_args(parser)
    args = parser.parse_args(argv)
    return gen_pairs_command(args, load=load_tiny)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
