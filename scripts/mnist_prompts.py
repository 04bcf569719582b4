"""Prompts for the embedded text-to-image teacher `mnist-t2i`, balanced over the digits (prompt
i names digit i mod 10; random wording and attributes, `text.mnist_captions.balanced_prompts`):

    python scripts/mnist_prompts.py --num 2000 --seed 11 --out prompts.txt

The text-to-image fidelity protocol samples 2,000 of them with seed 11; pairs are made from
--seed 0 (docs/text.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ardistill.text.mnist_captions import balanced_prompts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, required=True)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    prompts, _ = balanced_prompts(args.num, args.seed)
    args.out.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    print(f"wrote {len(prompts)} prompts to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
