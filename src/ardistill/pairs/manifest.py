"""`manifest.json`: written once, last, when every shard of a dataset is complete.

It holds the identity (config.json), the list of shards with their sha256 / size / sample range
/ noise checksum, the environments that computed them, and `checksum`: the sha256 of the
manifest's own canonical JSON without that field (an edited manifest is detected). Its absence
means "incomplete": readers refuse such a folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ardistill.pairs.config import FORMAT, FORMAT_VERSION
from ardistill.pairs.files import CONFIG, MANIFEST, PairsFileError, read_json


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def self_checksum(manifest: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in manifest.items() if k != "checksum"}))\
        .hexdigest()


def build_manifest(identity: dict, records: list[dict], captions_sha256: str | None) -> dict:
    """records: the sidecar records of shards 0..K-1, in order."""
    envs: list[dict] = []
    for r in records:
        if r["env"] not in envs:
            envs.append(r["env"])
    shards = [{k: r[k] for k in ("file", "first", "count", "sha256", "bytes", "noise_sha256")}
              for r in records]
    gen = identity["generation"]
    n_pos = identity["layout"]["num_positions"]
    tok_bytes = 2 if identity["token_dtype"] == "uint16" else 4
    man = {
        "identity": identity,
        "num_samples": gen["num"],
        "num_shards": len(shards),
        "shards": shards,
        "environments": envs,
        "captions_sha256": captions_sha256,
        # stored per sample: tokens + index + noise seed + condition column (int64 each)
        "bytes_per_sample": n_pos * tok_bytes + 3 * 8,
        "noise_bytes_per_sample_if_stored": n_pos * identity["codebook_dim"] * 4,
        "generation_seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
    }
    man["checksum"] = self_checksum(man)
    return man


def read_manifest(root: Path) -> dict:
    """The manifest of a complete dataset, checked for format and self-consistency (not the
    shard contents: see verify.py). Raises PairsFileError with what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise PairsFileError(f"{root}: no such folder")
    if not (root / MANIFEST).is_file():
        if (root / CONFIG).is_file():
            raise PairsFileError(f"{root}: incomplete dataset (config.json but no manifest.json):"
                                 " run the same gen-pairs command again to finish it")
        raise PairsFileError(f"{root}: not a pairs dataset (no manifest.json)")
    man = read_json(root / MANIFEST, "manifest.json")
    ident = man.get("identity", {})
    if ident.get("format") != FORMAT:
        raise PairsFileError(f"{root / MANIFEST}: not an {FORMAT} manifest")
    if ident.get("format_version") != FORMAT_VERSION:
        raise PairsFileError(f"{root / MANIFEST}: format version {ident.get('format_version')}, "
                             f"this ardistill reads version {FORMAT_VERSION}")
    if man.get("checksum") != self_checksum(man):
        raise PairsFileError(f"{root / MANIFEST}: checksum mismatch: the manifest was edited or "
                             "corrupted")
    _check_layout(root, man)
    return man


def _check_layout(root: Path, man: dict) -> None:
    """Shard ranges must tile [0, num) in shard_size steps."""
    gen = man["identity"]["generation"]
    num, size = gen["num"], gen["shard_size"]
    n_shards = -(-num // size)
    shards = man.get("shards", [])
    if man.get("num_samples") != num or len(shards) != n_shards:
        raise PairsFileError(f"{root / MANIFEST}: {len(shards)} shards / "
                             f"{man.get('num_samples')} samples listed, the settings need "
                             f"{n_shards} shards / {num} samples")
    for k, s in enumerate(shards):
        first = k * size
        if (s.get("first"), s.get("count")) != (first, min(size, num - first)):
            raise PairsFileError(f"{root / MANIFEST}: shard {k} lists samples "
                                 f"[{s.get('first')}, +{s.get('count')})")
