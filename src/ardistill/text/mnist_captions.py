"""Captions of the embedded MNIST digits, for the text-conditional teacher `mnist-t2i`.

Each image gets captions written from its label and three attributes measured on its pixels:

- thickness: ink per unit of height (sum of intensities / bounding-box height): thin | - | thick;
- slant: the shear of the ink about its centroid (second moments: x shift per row going up):
  leaning left | upright | leaning right;
- width: bounding-box width (MNIST digits are scaled to the same height): narrow | - | wide.

Attributes are relative to the digit (a wide 1 is narrower than a narrow 0): each is cut into
three levels at the terciles of the embedded train split for that digit (`ATTRIBUTE_CUTS`,
measured once with `attribute_cuts` and written here, so any image and any typed prompt use the
same words). The wordings vary (`TEMPLATES`): the digit as a word or a numeral, none, some or
all of the attributes. `digit_of_prompt` finds the digit a prompt names (prompt accuracy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from torch import Tensor

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NAMES = ("thickness", "slant", "width")
LEVELS = {
    "thickness": ("thin", None, "thick"),
    "slant": ("leaning left", "upright", "leaning right"),
    "width": ("narrow", None, "wide"),
}
# Per digit 0..9: {attribute: (lower tercile, upper tercile)} of the embedded train split,
# from `attribute_cuts(measure(x), y)` (tests/text/test_mnist_captions.py recomputes them).
ATTRIBUTE_CUTS: dict[int, dict[str, tuple[float, float]]] = {
    0: {"thickness": (6.49, 7.7537), "slant": (0.1318, 0.3232), "width": (17.0, 20.0)},
    1: {"thickness": (2.6327, 3.2237), "slant": (0.1394, 0.4316), "width": (7.0, 12.0)},
    2: {"thickness": (5.6019, 6.8616), "slant": (-0.0024, 0.2732), "width": (17.0, 20.0)},
    3: {"thickness": (5.1131, 6.2039), "slant": (0.0053, 0.2088), "width": (15.0, 18.0)},
    4: {"thickness": (4.1366, 5.1274), "slant": (-0.077, 0.2226), "width": (14.0, 18.0)},
    5: {"thickness": (4.7182, 5.8348), "slant": (0.1049, 0.4133), "width": (17.0, 20.0)},
    6: {"thickness": (4.5449, 5.9144), "slant": (-0.0442, 0.1416), "width": (13.0, 16.0)},
    7: {"thickness": (4.034, 4.9981), "slant": (-0.0693, 0.1931), "width": (14.0, 17.0)},
    8: {"thickness": (5.2017, 6.471), "slant": (0.0696, 0.3222), "width": (14.0, 17.0)},
    9: {"thickness": (4.1235, 5.1531), "slant": (-0.1009, 0.1357), "width": (12.0, 15.0)},
}

# {a}: "a" / "an" plus the adjectives (width, thickness) that have words; {d}: the digit;
# {slant}: the slant phrase; {stroke}: the thickness word or "regular".
TEMPLATES = (
    "the digit {d}",
    "a handwritten {d}",
    "{a} {d}",
    "{a} {d}, {slant}",
    "{a} handwritten {d} {slant}",
    "the number {d}, {slant}",
    "{a} digit {d}",
    "a handwritten {d} with {stroke} strokes",
    "{d} written {slant}",
    "{a} number {d} that is {slant}",
)


@dataclass(frozen=True)
class Attributes:
    """Per image (N,) float arrays: thickness, slant, width (see the module docstring)."""

    thickness: np.ndarray
    slant: np.ndarray
    width: np.ndarray

    def levels(self, labels: Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Level 0 / 1 / 2 of every image per attribute, against its digit's cuts."""
        labels = np.asarray(labels)
        out = {}
        for name in NAMES:
            v = getattr(self, name)
            lo = np.array([ATTRIBUTE_CUTS[int(d)][name][0] for d in labels])
            hi = np.array([ATTRIBUTE_CUTS[int(d)][name][1] for d in labels])
            out[name] = (v > lo).astype(np.int64) + (v > hi).astype(np.int64)
        return out


def measure(images: Tensor) -> Attributes:
    """images (N, C, H, W) float in [-1, 1] (digit white on black; channel 0 is read)."""
    if images.ndim != 4:
        raise ValueError(f"measure: need images (N, C, H, W), got {tuple(images.shape)}")
    x = ((images[:, 0].double() + 1) / 2).clamp(0, 1).numpy()  # (N, H, W) ink in [0, 1]
    n, h, w = x.shape
    rows = np.arange(h, dtype=np.float64)[None, :, None]
    cols = np.arange(w, dtype=np.float64)[None, None, :]
    mass = x.sum((1, 2)).clip(min=1e-9)
    cy = (x * rows).sum((1, 2)) / mass
    cx = (x * cols).sum((1, 2)) / mass
    dy, dx = rows - cy[:, None, None], cols - cx[:, None, None]
    mu02 = (x * dy * dy).sum((1, 2)).clip(min=1e-9)
    mu11 = (x * dx * dy).sum((1, 2))
    slant = -mu11 / mu02  # x shift per row going UP (rows grow downwards): > 0 leans right
    inked = x > 0.3
    height = _extent(inked.any(2))
    width = _extent(inked.any(1))
    thickness = x.sum((1, 2)) / height.clip(min=1)
    return Attributes(thickness=thickness, slant=slant, width=width)


def _extent(any_ink: np.ndarray) -> np.ndarray:
    """(N, L) bool ink per row (or column) -> (N,) float extent in pixels (0 without ink)."""
    has = any_ink.any(1)
    first = any_ink.argmax(1)
    last = any_ink.shape[1] - 1 - any_ink[:, ::-1].argmax(1)
    return np.where(has, last - first + 1, 0).astype(np.float64)


def attribute_cuts(attrs: Attributes, labels: Tensor | np.ndarray
                   ) -> dict[int, dict[str, tuple[float, float]]]:
    """Per digit, the terciles of each attribute (how `ATTRIBUTE_CUTS` was computed)."""
    labels = np.asarray(labels)
    out = {}
    for d in range(10):
        sel = labels == d
        out[d] = {name: tuple(round(float(q), 4) for q in
                              np.quantile(getattr(attrs, name)[sel], [1 / 3, 2 / 3]))
                  for name in NAMES}
    return out


def caption(label: int, levels: dict[str, int], template: int, numeral: bool) -> str:
    """One caption: digit `label`, attribute `levels` (name -> 0/1/2), `TEMPLATES[template]`,
    the digit as a numeral or a word."""
    words = {name: LEVELS[name][int(levels[name])] for name in NAMES}
    adjectives = " ".join(w for w in (words["width"], words["thickness"]) if w)
    text = TEMPLATES[template].format(d=str(label) if numeral else DIGIT_WORDS[label],
                                      a=("a " + adjectives).strip(), slant=words["slant"],
                                      stroke=words["thickness"] or "regular")
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\b([Aa]) (?=[aeiou8])", r"\1n ", text)  # "a eight", "a 8" -> "an ..."


def write_captions(images: Tensor, labels: Tensor, per_image: int, seed: int) -> list[list[str]]:
    """`per_image` captions of every image (distinct templates, word or numeral at random),
    drawn from `numpy.random.default_rng(seed)`: a list of N lists."""
    if not 1 <= per_image <= len(TEMPLATES):
        raise ValueError(f"per_image must be in 1..{len(TEMPLATES)}, got {per_image}")
    levels = measure(images).levels(labels)
    rng = np.random.default_rng(seed)
    out = []
    for i, label in enumerate(labels.tolist()):
        lv = {name: int(v[i]) for name, v in levels.items()}
        picks = rng.choice(len(TEMPLATES), size=per_image, replace=False)
        numerals = rng.random(per_image) < 0.3
        out.append([caption(int(label), lv, int(t), bool(nm)) for t, nm in zip(picks, numerals)])
    return out


def balanced_prompts(n: int, seed: int) -> tuple[list[str], list[int]]:
    """`n` prompts balanced over the digits (digit i % 10), with random templates and attribute
    levels: the prompt set of the text-to-image fidelity protocol. Returns (prompts, digits)."""
    rng = np.random.default_rng(seed)
    prompts, digits = [], []
    for i in range(n):
        d = i % 10
        lv = {name: int(rng.integers(3)) for name in NAMES}
        prompts.append(caption(d, lv, int(rng.integers(len(TEMPLATES))), bool(rng.random() < 0.3)))
        digits.append(d)
    return prompts, digits


_DIGIT_RE = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r"|[0-9])\b", re.IGNORECASE)


def digit_of_prompt(prompt: str) -> int:
    """The digit a prompt names (the first digit word or numeral in it); -1 when it names none
    or several different ones."""
    found = {(DIGIT_WORDS.index(m.lower()) if not m.isdigit() else int(m))
             for m in _DIGIT_RE.findall(prompt)}
    return found.pop() if len(found) == 1 else -1
