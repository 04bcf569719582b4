"""Caption features for text-conditional teachers (`--captions FILE` of gen-pairs and sample).

FILE is a `.npz` or `.safetensors` holding `caption` (R, T, D) float16/float32 features
(left-padded: valid rows at the end, padding zero) and `caption_mask` (R, T) bool (or 0/1
integers), True = valid caption token. Sample i uses row `i mod R` (`core.seeds`). A pairs
dataset keeps its own copy as `captions.safetensors` (memory-mapped by the reader), and records
the sha256 of both the given file and the copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ardistill.errors import DataFileError
from ardistill.teachers.base import Condition
from ardistill.utils.files import encode_safetensors, sha256_file


@dataclass
class Captions:
    """caption: (R, T, D) float16/float32; mask: (R, T) bool (numpy, possibly memory-mapped).
    source_sha256: checksum of the file they were read from."""

    caption: np.ndarray
    mask: np.ndarray
    source_sha256: str

    def __post_init__(self) -> None:
        c, m = self.caption, self.mask
        if c.ndim != 3 or m.shape != c.shape[:2]:
            raise DataFileError(f"captions: need caption (R, T, D) and caption_mask (R, T), "
                                 f"got {c.shape} and {m.shape}")
        if c.shape[0] == 0:
            raise DataFileError("captions: the file has no rows")

    @property
    def rows(self) -> int:
        return int(self.caption.shape[0])

    def condition(self, rows: np.ndarray) -> Condition:
        """(B,) int64 rows -> Condition with caption (B, T, D) float32 and mask (B, T) bool."""
        rows = np.asarray(rows, dtype=np.int64)
        cap = torch.from_numpy(np.asarray(self.caption[rows], dtype=np.float32))
        mask = torch.from_numpy(np.asarray(self.mask[rows], dtype=np.bool_))
        return Condition(caption=cap, caption_mask=mask)

    def identity(self) -> dict:
        return {"kind": "caption", "rows": self.rows, "tokens": int(self.caption.shape[1]),
                "dim": int(self.caption.shape[2]), "dtype": str(self.caption.dtype),
                "source_sha256": self.source_sha256}

    def encoded(self) -> bytes:
        return encode_safetensors({"caption": self.caption, "caption_mask": self.mask},
                                  {"source_sha256": self.source_sha256})


def load_captions(path: str | Path) -> Captions:
    """Read a caption feature file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"caption file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        arrays = {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
                  for k, v in load_file(str(path)).items()}
    else:
        raise DataFileError(f"{path}: caption file must be .npz or .safetensors")
    missing = {"caption", "caption_mask"} - set(arrays)
    if missing:
        raise DataFileError(f"{path}: missing arrays {sorted(missing)}; found {sorted(arrays)}")
    cap = arrays["caption"]
    if cap.dtype not in (np.float16, np.float32):
        cap = cap.astype(np.float32)
    return Captions(cap, arrays["caption_mask"].astype(np.bool_), sha256_file(path))
