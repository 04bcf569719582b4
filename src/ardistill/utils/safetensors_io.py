"""Byte-reproducible, atomic safetensors files.

`safetensors.torch.save_file` writes the `__metadata__` table in the iteration order of a Rust
HashMap, which is randomised per process: two runs that save the same tensors with the same
two or more metadata entries can write different bytes (and so different sha256 sums). Every
file ardistill records by its sha256 goes through `save_safetensors`, which re-serialises the
header with the metadata keys sorted; the tensor bytes and their offsets are untouched.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from torch import Tensor


def safetensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The file contents for `tensors` (contiguous, CPU) with `metadata` in sorted key order."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    if "__metadata__" in header:
        meta = header.pop("__metadata__")
        header = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned, as in the writer
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def save_safetensors(tensors: dict[str, Tensor], path: str | Path,
                     metadata: dict[str, str] | None = None, *, mode: int | None = 0o644) -> Path:
    """Write `tensors` to `path` atomically (a sibling temp file, then a rename) with
    deterministic bytes. mode: file permissions (0o644 by default: the files are shared or
    shipped as package data; None keeps the process umask's default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                             metadata)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            tmp.chmod(mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
