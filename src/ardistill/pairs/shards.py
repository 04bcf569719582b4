"""Shard files: one safetensors file per shard plus a small JSON sidecar.

A shard k holds samples [k * shard_size, min((k + 1) * shard_size, num)) as arrays
  index (n,) int64, noise_seed (n,) int64, label or caption_row (n,) int64,
  tokens (n, N) uint16 (int32 when V > 65536).
Written atomically (files.py), then its sidecar `shard-K.json` (sha256 and size of the shard
file, sample range, sha256 of the regenerated noise, the environment that computed it). A
shard is complete iff its sidecar exists and the shard file matches it; anything else is
recomputed by a resumed run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ardistill.pairs.files import (
    PairsFileError,
    atomic_write_bytes,
    atomic_write_json,
    encode_safetensors,
    map_safetensors,
    read_json,
    sha256_bytes,
    sha256_file,
    shard_name,
    sidecar_name,
)
from ardistill.pairs.generate import SampleBlock
from ardistill.pairs.seeds import noise_digest

ARRAYS = ("index", "noise_seed", "tokens")


def cond_key(identity: dict) -> str:
    """Name of the stored condition column: `label` (classes) or `caption_row` (captions)."""
    return "caption_row" if identity["condition"]["kind"] == "caption" else "label"


def shard_bytes(block: SampleBlock, identity: dict, k: int) -> bytes:
    tokens = block.tokens.numpy().astype(identity["token_dtype"])
    arrays = {"index": block.index, "noise_seed": block.noise_seed,
              cond_key(identity): block.cond, "tokens": tokens}
    meta = {"format": identity["format"], "shard": str(k), "first": str(int(block.index[0])),
            "count": str(len(block.index))}
    return encode_safetensors(arrays, meta)


def write_shard(root: Path, k: int, block: SampleBlock, identity: dict, env: dict,
                seconds: float) -> dict:
    """Write shard k (atomically), then its sidecar. Returns the sidecar record."""
    data = shard_bytes(block, identity, k)
    atomic_write_bytes(root / shard_name(k), data)
    record = {"shard": k, "file": shard_name(k), "first": int(block.index[0]),
              "count": len(block.index), "sha256": sha256_bytes(data), "bytes": len(data),
              "noise_sha256": noise_digest(block.noise), "env": env,
              "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(root / sidecar_name(k), record)
    return record


def check_shard_file(root: Path, record: dict, first: int, count: int) -> str | None:
    """None when the shard file matches `record` and the range [first, first + count);
    else the reason it does not."""
    path = root / record.get("file", "")
    if (record.get("first"), record.get("count")) != (first, count):
        return (f"{path.name}: records samples [{record.get('first')}, +{record.get('count')}) "
                f"where the settings put [{first}, +{count})")
    if not path.is_file():
        return f"{path.name}: missing"
    size = path.stat().st_size
    if size != record.get("bytes"):
        return f"{path.name}: {size} bytes, {record.get('bytes')} recorded (truncated?)"
    if sha256_file(path) != record.get("sha256"):
        return f"{path.name}: sha256 differs from the recorded one (corrupt)"
    return None


def shard_state(root: Path, k: int, first: int, count: int) -> tuple[dict | None, str]:
    """(sidecar record, "") for a complete shard k; (None, reason) otherwise."""
    side = root / sidecar_name(k)
    if not side.is_file():
        return None, "not written" if not (root / shard_name(k)).exists() else "no sidecar"
    try:
        record = read_json(side, f"sidecar of shard {k}")
    except PairsFileError as e:
        return None, str(e)
    reason = check_shard_file(root, record, first, count)
    return (None, reason) if reason else (record, "")


def open_shard(path: Path, identity: dict, first: int, count: int) -> dict[str, np.ndarray]:
    """Memory-map a shard and check its arrays' names, dtypes and shapes against the identity
    and the expected range: {"index", "noise_seed", "cond", "tokens"}."""
    arrays, meta = map_safetensors(path)
    key = cond_key(identity)
    n_pos = identity["layout"]["num_positions"]
    want = {"index": ("int64", (count,)), "noise_seed": ("int64", (count,)),
            key: ("int64", (count,)), "tokens": (identity["token_dtype"], (count, n_pos))}
    if set(arrays) != set(want):
        raise PairsFileError(f"{path.name}: arrays {sorted(arrays)}, expected {sorted(want)}")
    for name, (dtype, shape) in want.items():
        a = arrays[name]
        if a.dtype != np.dtype(dtype) or tuple(a.shape) != shape:
            raise PairsFileError(f"{path.name}: {name} is {a.dtype}{tuple(a.shape)}, expected "
                                 f"{dtype}{shape}")
    if meta.get("first") != str(first) or meta.get("count") != str(count):
        raise PairsFileError(f"{path.name}: header says samples [{meta.get('first')}, "
                             f"+{meta.get('count')}), expected [{first}, +{count})")
    arrays["cond"] = arrays.pop(key)
    return arrays
