"""Does a text-to-image run follow the attribute words of its prompts? For each sample of a
prompted `ardistill sample` run (mnist-t2i), the attributes its prompt asks for (thin / thick,
leaning left / upright / leaning right, narrow / wide) against the levels measured on the
sample (`text.mnist_captions.measure`, cut at the requested digit's terciles). Chance: 1/3.

    python scripts/attribute_accuracy.py PROMPTS.txt RUN/samples.npz [RUN2/samples.npz ...]
"""

from __future__ import annotations

import re
import sys

import numpy as np
import torch

from ardistill.text import mnist_captions as M


def requested(prompt: str) -> dict[str, int]:
    """{attribute: level} that a prompt's words ask for (attributes it does not name: absent)."""
    out = {}
    for name, words in M.LEVELS.items():
        for level, word in enumerate(words):
            if word and re.search(r"\b" + word + r"\b", prompt):
                out[name] = level
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    prompts = [line.strip() for line in open(argv[0], encoding="utf-8") if line.strip()]
    asked = [requested(p) for p in prompts]
    digits = [M.digit_of_prompt(p) for p in prompts]
    print(f"{'samples':<50} " + " ".join(f"{n:>18}" for n in M.NAMES))
    for path in argv[1:]:
        with np.load(path) as f:
            images = torch.from_numpy(f["arr_0"]).permute(0, 3, 1, 2).float() / 127.5 - 1
            rows = f["arr_1"]
        keep = np.array([digits[r] >= 0 for r in rows])
        levels = M.measure(images[torch.from_numpy(keep)]).levels(
            np.array([digits[r] for r in rows[keep]]))
        cells = []
        for name in M.NAMES:
            hits = [levels[name][i] == asked[r][name]
                    for i, r in enumerate(rows[keep]) if name in asked[r]]
            cells.append(f"{np.mean(hits):.3f} of {len(hits):>5}" if hits else "-")
        print(f"{path:<50} " + " ".join(f"{c:>18}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
