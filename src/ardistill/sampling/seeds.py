"""Per-sample randomness of `ardistill sample`: a pure function of (seed, sample index).

- noise: exactly the noise of sample i of a pairs dataset with the same seed
  (`pairs.seeds.noise_seeds` + `regenerate_noise`), so a pairs dataset's flow-mapped tokens
  are a valid token-agreement reference for samples with the same seed and index;
- class label: "balanced" = `classes[i mod len(classes)]` (every class equally often, as the
  paper's uniform labels); "random" = `pairs.seeds.class_labels` (the pairs dataset's labels);
- choice seed (multinomial teacher sampling, onestep* draws): the first 8 bytes of
  `sha256(b"ardistill.sample/v1/choice/" + seed + index)`, 63 bits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ardistill.pairs.seeds import check_seed, class_labels, noise_seeds, regenerate_noise

LABEL_MODES = ("balanced", "random")


def choice_seeds(seed: int, index: np.ndarray, tag: bytes = b"choice") -> np.ndarray:
    """(B,) int64 seeds for the per-sample generators of samples `index`."""
    seed = check_seed(seed)
    out = []
    for i in index.tolist():
        msg = b"ardistill.sample/v1/" + tag + b"/" + seed.to_bytes(8, "little") + \
            int(i).to_bytes(8, "little")
        out.append(int.from_bytes(hashlib.sha256(msg).digest()[:8], "little") >> 1)
    return np.asarray(out, dtype=np.int64)


def sample_noise(seed: int, index: np.ndarray, num_positions: int, dim: int) -> Tensor:
    """(B, N, d) float32 CPU noise of samples `index` (the pairs dataset's noise)."""
    return regenerate_noise(noise_seeds(seed, index), num_positions, dim)


def sample_labels(seed: int, index: np.ndarray, mode: str, classes: Sequence[int]) -> Tensor:
    """(B,) int64 class labels of samples `index`: mode "balanced" or "random" over `classes`."""
    if not classes:
        raise ValueError("classes must not be empty")
    if mode == "balanced":
        return torch.as_tensor([classes[int(i) % len(classes)] for i in index], dtype=torch.long)
    if mode == "random":
        return torch.from_numpy(class_labels(seed, index, classes))
    raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
