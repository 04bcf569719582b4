"""Per-sample randomness: a pure function of (seed, sample index), shared by pair generation,
sampling and evaluation (docs/pairs.md, "Determinism").

Sample i of a pairs dataset with seed S gets:

- `u(S, i, tag)`: the first 8 bytes (little-endian) of
  `sha256(b"ardistill.pairs/v1/" + tag + b"/" + S as 8 LE bytes + i as 8 LE bytes)`;
- a noise seed `u(S, i, b"noise") >> 1` (63 bits, fits int64), stored in the shard; the noise
  is `torch.randn((N, d), generator=torch.Generator("cpu").manual_seed(noise_seed))`, float32,
  regenerated on the CPU whatever device generates or trains (torch's CPU generator stream is
  device-independent; a torch version that changed it is caught by the recorded checksum);
- a class label `classes[(u(S, i, b"class") * len(classes)) >> 64]`: uniform over `classes`
  (bias below 2^-54), computed with integers only, so it depends on no RNG implementation;
- with caption features instead of classes: row `i mod R` of the R caption rows.

`ardistill sample` with seed S uses the same noise for its sample i (`sample_noise`), so a pairs
dataset's flow-mapped tokens are a token-agreement reference for it; its labels are
"balanced" (`classes[i mod len(classes)]`, the paper's uniform labels) or "random" (the
dataset's labels); its choice seeds (multinomial teacher sampling, onestep* draws) are the first
8 bytes of `sha256(b"ardistill.sample/v1/choice/" + S + i)`, 63 bits (`choice_seeds`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_PREFIX = b"ardistill.pairs/v1/"
_SAMPLE_PREFIX = b"ardistill.sample/v1/"
LABEL_MODES = ("balanced", "random")
MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> int:
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2^63 - 1], got {seed}")
    return int(seed)


def _u64(seed: int, index: int, tag: bytes) -> int:
    msg = _PREFIX + tag + b"/" + seed.to_bytes(8, "little") + index.to_bytes(8, "little")
    return int.from_bytes(hashlib.sha256(msg).digest()[:8], "little")


def _indices(indices: Sequence[int] | np.ndarray | Tensor) -> list[int]:
    out = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
    if out and min(out) < 0:
        raise ValueError(f"sample indices must be >= 0, got {min(out)}")
    return out


def noise_seeds(seed: int, indices: Sequence[int] | np.ndarray | Tensor) -> np.ndarray:
    """(B,) int64 noise seeds of samples `indices` of a dataset with `seed`."""
    seed = check_seed(seed)
    return np.array([_u64(seed, i, b"noise") >> 1 for i in _indices(indices)], dtype=np.int64)


def class_labels(
    seed: int, indices: Sequence[int] | np.ndarray | Tensor, classes: Sequence[int]
) -> np.ndarray:
    """(B,) int64 class labels drawn uniformly from `classes` for samples `indices`."""
    seed, n = check_seed(seed), len(classes)
    if n == 0:
        raise ValueError("classes must not be empty")
    pick = [(_u64(seed, i, b"class") * n) >> 64 for i in _indices(indices)]
    return np.asarray(classes, dtype=np.int64)[np.asarray(pick, dtype=np.int64)]


def caption_rows(indices: Sequence[int] | np.ndarray | Tensor, num_rows: int) -> np.ndarray:
    """(B,) int64 caption rows of samples `indices`: `i mod num_rows`."""
    if num_rows <= 0:
        raise ValueError("the caption file has no rows")
    return np.asarray(_indices(indices), dtype=np.int64) % num_rows


def regenerate_noise(seeds: np.ndarray | Tensor, num_positions: int, dim: int) -> Tensor:
    """(B,) int64 noise seeds -> (B, N, d) float32 N(0, I) noise on the CPU."""
    seeds = seeds.tolist() if hasattr(seeds, "tolist") else list(seeds)
    out = torch.empty(len(seeds), num_positions, dim, dtype=torch.float32)
    gen = torch.Generator(device="cpu")
    for b, s in enumerate(seeds):
        gen.manual_seed(int(s))
        torch.randn(num_positions, dim, generator=gen, out=out[b])
    return out


def noise_digest(noise: Tensor) -> str:
    """sha256 of (B, N, d) float32 noise as little-endian bytes in sample order."""
    arr = noise.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(arr.astype("<f4", copy=False).tobytes()).hexdigest()


def choice_seeds(seed: int, index: np.ndarray, tag: bytes = b"choice") -> np.ndarray:
    """(B,) int64 seeds for the per-sample generators of samples `index` (63 bits)."""
    seed = check_seed(seed)
    out = []
    for i in _indices(index):
        msg = _SAMPLE_PREFIX + tag + b"/" + seed.to_bytes(8, "little") + i.to_bytes(8, "little")
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
