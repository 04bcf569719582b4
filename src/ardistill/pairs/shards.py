"""Shard files: one safetensors file per shard plus a small JSON sidecar.

A shard k holds samples [k * shard_size, min((k + 1) * shard_size, num)) as arrays
  index (n,) int64, noise_seed (n,) int64, label or caption_row (n,) int64,
  tokens (n, N) uint16 (int32 when V > 65536).
Written atomically (`utils.files`), then its sidecar `shard-K.json` (sha256 and size of the shard
file, sample range, sha256 of the regenerated noise, the environment that computed it). A
shard is complete iff its sidecar exists and the shard file matches it; anything else is
recomputed by a resumed run.
"""

from __future__ import annotations

import time
from pathlib import Path

from ardistill.core.pairs_format import cond_key, read_json, shard_name, sidecar_name
from ardistill.core.seeds import noise_digest
from ardistill.errors import PairsFileError
from ardistill.pairs.generate import SampleBlock
from ardistill.utils.files import (
    atomic_write_bytes,
    atomic_write_json,
    encode_safetensors,
    sha256_bytes,
    sha256_file,
)

ARRAYS = ("index", "noise_seed", "tokens")

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
