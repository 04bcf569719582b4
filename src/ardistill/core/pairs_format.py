"""The on-disk format of a pairs dataset: file names, the manifest, shard reading, the stored
captions (docs/pairs.md). Pair generation (`ardistill.pairs`) writes it; training, sampling
and evaluation read it through `core.pairs_dataset`.

A dataset folder holds `config.json` (the identity, written when generation starts), shards
`shard-K.safetensors` with their sidecars `shard-K.json` (written after the shard: its
presence marks the shard complete), `captions.safetensors` for a text-conditional teacher, and
`manifest.json`, written once, last, when every shard is complete. The manifest holds the
identity (config.json), the list of shards with their sha256 / size / sample range / noise
checksum, the environments that computed them, and `checksum`: the sha256 of the manifest's
own canonical JSON without that field (an edited manifest is detected). Its absence means
"incomplete": readers refuse such a folder.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np

from ardistill.core.captions import Captions
from ardistill.errors import PairsFileError
from ardistill.teachers.base import TokenLayout
from ardistill.utils import files

FORMAT = "ardistill-pairs"
FORMAT_VERSION = 1
CONFIG = "config.json"
MANIFEST = "manifest.json"
CAPTIONS = "captions.safetensors"

read_json = partial(files.read_json, error=PairsFileError)
map_safetensors = partial(files.map_safetensors, error=PairsFileError)


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.safetensors"


def sidecar_name(k: int) -> str:
    """Written after its shard: its presence marks the shard complete (with the checksum)."""
    return f"shard-{k:06d}.json"


def layout_of(identity: dict) -> TokenLayout:
    """The token layout recorded in a dataset identity."""
    lay = identity["layout"]
    if lay["kind"] == "raster":
        return TokenLayout.raster(lay["grid"])
    return TokenLayout.multiscale(lay["patch_nums"])


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


def cond_key(identity: dict) -> str:
    """Name of the stored condition column: `label` (classes) or `caption_row` (captions)."""
    return "caption_row" if identity["condition"]["kind"] == "caption" else "label"


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


def store_captions(root: Path, captions: Captions) -> str:
    """Write the dataset's copy (atomically) unless an identical one exists; returns its
    sha256."""
    data = captions.encoded()
    digest = files.sha256_bytes(data)
    dest = Path(root) / CAPTIONS
    if not dest.is_file() or files.sha256_file(dest) != digest:
        files.atomic_write_bytes(dest, data)
    return digest


def open_stored_captions(root: Path) -> Captions:
    """Memory-map a dataset's `captions.safetensors`."""
    arrays, meta = map_safetensors(Path(root) / CAPTIONS)
    if "caption" not in arrays or "caption_mask" not in arrays:
        raise PairsFileError(f"{root / CAPTIONS}: missing caption / caption_mask")
    return Captions(arrays["caption"], arrays["caption_mask"], meta.get("source_sha256", ""))
