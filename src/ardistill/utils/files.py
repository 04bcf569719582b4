"""Files written safely and read defensively: atomic writes, checksums, JSON, safetensors
mapped into memory.

Every file is written as a hidden temporary in the same folder (`.NAME.tmp-HOST-PID`), flushed,
fsync'ed, renamed over its final name (atomic on POSIX), and the folder is fsync'ed: a final
name always holds a complete file. Safetensors files are mapped with `numpy.memmap` at the
offsets of their header, so a large file is never loaded into memory as a whole. Readers raise
`error` (default `DataFileError`) naming the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from pathlib import Path

import numpy as np

from ardistill.errors import DataFileError

_TMP_MARK = ".tmp-"

# safetensors dtype codes <-> numpy
_DTYPES = {"I64": np.int64, "I32": np.int32, "U16": np.uint16, "U8": np.uint8,
           "BOOL": np.bool_, "F32": np.float32, "F16": np.float16}


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_MARK}{socket.gethostname()}-{os.getpid()}")


def is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and _TMP_MARK in path.name


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def named(e: BaseException, path: Path) -> BaseException:
    """An OSError without a file name (a failed write) gets `path`'s; anything else as is."""
    if isinstance(e, OSError) and e.filename is None and e.errno is not None:
        return OSError(e.errno, e.strerror or str(e), str(path))
    return e


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, fsync and rename."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk, an interrupt: no partial file stays behind
        tmp.unlink(missing_ok=True)
        err = named(e, path)
        if err is e:
            raise
        raise err from e
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: dict, **dumps) -> None:
    """obj as JSON (default: indent 1, sorted keys), atomically."""
    opts = {"indent": 1, "sort_keys": True, **dumps}
    atomic_write_bytes(path, (json.dumps(obj, **opts) + "\n").encode())


def atomic_write_with(path: Path, write, before_rename=None) -> None:
    """`write(file_object)` into a temporary file, then rename it to `path` (atomic; nothing
    left behind on failure). before_rename(tmp): called with the complete temporary file
    before the rename (a checksum sidecar written first, say)."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        err = named(e, path)
        if err is e:
            raise
        raise err from e
    _fsync_dir(path.parent)


def read_json(path: Path, what: str, error: type[Exception] = DataFileError) -> dict:
    """A JSON object from `path`; `error` naming the file when it is missing or malformed."""
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise error(f"{path}: {what} is missing") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: {what} is not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise error(f"{path}: {what} must be a JSON object")
    return obj


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def encode_safetensors(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The bytes of a safetensors file holding `arrays` (C-contiguous little-endian)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)


def map_safetensors(path: Path, error: type[Exception] = DataFileError
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Memory-map every tensor of a safetensors file (read-only) -> ({name: array}, metadata).

    The header is checked against the file size, so a truncated file is an error here."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n <= 0 or 8 + n > size:
                raise error(f"{path}: truncated or not a safetensors file")
            header = json.loads(f.read(n))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not a readable safetensors file ({e})") from e
    meta = header.pop("__metadata__", {}) or {}
    arrays, start = {}, 8 + n
    for name, info in header.items():
        dtype = _DTYPES.get(info.get("dtype"))
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        if dtype is None or start + e > size:
            raise error(f"{path}: tensor {name!r} is truncated or of an unknown dtype")
        count = int(np.prod(shape)) if shape else 1
        if count * np.dtype(dtype).itemsize != e - b:
            raise error(f"{path}: tensor {name!r} has inconsistent offsets")
        if count == 0:
            arrays[name] = np.zeros(shape, dtype=dtype)
            continue
        arrays[name] = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r",
                                 offset=start + b, shape=shape)
    return arrays, meta
