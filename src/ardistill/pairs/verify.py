"""`verify_pairs`: check a dataset completely and compute its content digest.

Checks, in order (the first failure raises PairsFileError naming the file and the problem):
manifest present, of this format, self-checksum intact, shard ranges tiling [0, num);
config.json identical to the manifest's identity; the caption copy's checksum; for every shard:
size and sha256, array names / dtypes / shapes, sample indices, noise seeds and conditions
re-derived from the dataset seed, token ids < V, and the sha256 of the noise regenerated from
the seeds (a torch whose CPU random stream differs is reported as such).

The digest: sha256 over b"ardistill-pairs-digest-v1", a JSON header (num, N, d, condition
kind, caption source checksum), then for every sample in order its condition (int64 LE: label
or caption row), noise ((N, d) float32 LE) and tokens ((N,) int64 LE). It depends on the content
only: not on batch size, process count, shard size, interruptions or storage dtypes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ardistill.core.choosers import flow_identity
from ardistill.core.pairs_dataset import PairsDataset
from ardistill.core.pairs_format import (
    CAPTIONS,
    CONFIG,
    open_shard,
    open_stored_captions,
    read_json,
)
from ardistill.core.seeds import caption_rows, class_labels, noise_seeds, regenerate_noise
from ardistill.errors import PairsFileError
from ardistill.pairs.config import identity_diff, settings_from_identity
from ardistill.pairs.generate import PairsJob
from ardistill.pairs.shards import check_shard_file
from ardistill.teachers.base import Teacher
from ardistill.utils.files import sha256_file

DIGEST_CHUNK = 256  # samples hashed per step (bounds memory: VAR-d16 about 24 MB)


@dataclass
class VerifyReport:
    digest: str
    num_samples: int
    num_shards: int
    environments: list[dict]
    notes: list[str] = field(default_factory=list)


def digest_header(identity: dict) -> bytes:
    cond = identity["condition"]
    head = {"num": identity["generation"]["num"],
            "positions": identity["layout"]["num_positions"],
            "dim": identity["codebook_dim"], "condition": cond["kind"],
            "captions": cond.get("source_sha256")}
    return b"ardistill-pairs-digest-v1" + json.dumps(head, sort_keys=True).encode()


def digest_records(cond: np.ndarray, noise: torch.Tensor, tokens: np.ndarray) -> bytes:
    """Bytes of consecutive samples: per sample cond (int64), noise (float32), tokens (int64)."""
    n = len(cond)
    parts = [np.asarray(cond, "<i8").reshape(n, 1).view(np.uint8),
             noise.numpy().astype("<f4", copy=False).reshape(n, -1).view(np.uint8),
             np.asarray(tokens, "<i8").reshape(n, -1).view(np.uint8)]
    return np.ascontiguousarray(np.concatenate(parts, axis=1)).tobytes()


def verify_pairs(root: str | Path, *, progress: bool = False) -> VerifyReport:
    """Verify the dataset in `root` (module docstring); returns its digest."""
    root = Path(root)
    ds = PairsDataset(root)  # manifest checks
    ident, man = ds.identity, ds.manifest
    if not (root / CONFIG).is_file():
        raise PairsFileError(f"{root / CONFIG}: missing")
    diff = identity_diff(read_json(root / CONFIG, "config.json"), ident)
    if diff:
        raise PairsFileError(f"{root}: config.json and manifest.json disagree: " + "; ".join(diff))
    _check_captions(root, ds)
    h = hashlib.sha256(digest_header(ident))
    bar = tqdm(total=ds.num_total, unit="pair", desc="verify-pairs", disable=not progress)
    try:
        for k, rec in enumerate(man["shards"]):
            reason = check_shard_file(root, rec, rec["first"], rec["count"])
            if reason:
                raise PairsFileError(f"{root}: {reason}")
            _verify_shard(root, ds, k, rec, h, bar)
    finally:
        bar.close()
    return VerifyReport(h.hexdigest(), ds.num_total, len(man["shards"]), man["environments"])


def _check_captions(root: Path, ds: PairsDataset) -> None:
    if ds.identity["condition"]["kind"] != "caption":
        return
    path = root / CAPTIONS
    if not path.is_file():
        raise PairsFileError(f"{path}: missing (the dataset's caption features)")
    if sha256_file(path) != ds.manifest.get("captions_sha256"):
        raise PairsFileError(f"{path}: sha256 differs from the manifest's (corrupt)")


def _verify_shard(root: Path, ds: PairsDataset, k: int, rec: dict, h, bar: tqdm) -> None:
    ident = ds.identity
    first, count = rec["first"], rec["count"]
    arrays = open_shard(root / rec["file"], ident, first, count)
    name = rec["file"]
    index = np.arange(first, first + count, dtype=np.int64)
    if not np.array_equal(arrays["index"], index):
        raise PairsFileError(f"{name}: sample indices are not {first}..{first + count - 1}")
    seed = ident["generation"]["seed"]
    if not np.array_equal(arrays["noise_seed"], noise_seeds(seed, index)):
        raise PairsFileError(f"{name}: stored noise seeds differ from the ones derived from "
                             f"seed {seed} (pairs/seeds.py)")
    cond = ident["condition"]
    want = (class_labels(seed, index, cond["classes"]) if cond["kind"] == "class"
            else caption_rows(index, cond["rows"]))
    if not np.array_equal(arrays["cond"], want):
        raise PairsFileError(f"{name}: stored conditions differ from the ones derived from the "
                             "seed")
    n_pos, dim = ident["layout"]["num_positions"], ident["codebook_dim"]
    noise_h = hashlib.sha256()
    for a in range(0, count, DIGEST_CHUNK):
        b = min(a + DIGEST_CHUNK, count)
        tokens = np.asarray(arrays["tokens"][a:b], dtype=np.int64)
        if tokens.size and int(tokens.max()) >= ident["vocab_size"]:
            raise PairsFileError(f"{name}: token id {int(tokens.max())} >= vocabulary size "
                                 f"{ident['vocab_size']}")
        noise = regenerate_noise(arrays["noise_seed"][a:b], n_pos, dim)
        noise_h.update(noise.numpy().astype("<f4", copy=False).tobytes())
        h.update(digest_records(arrays["cond"][a:b], noise, tokens))
        bar.update(b - a)
    if noise_h.hexdigest() != rec["noise_sha256"]:
        envs = sorted({e["torch"] for e in ds.manifest["environments"]})
        raise PairsFileError(
            f"{name}: the noise regenerated from the stored seeds differs from the noise the "
            f"dataset was made with (recorded sha256 {rec['noise_sha256'][:16]}..., now "
            f"{noise_h.hexdigest()[:16]}...). Made with torch {', '.join(envs)}, this is torch "
            f"{torch.__version__}: if they differ, its CPU random stream changed; regenerate "
            "the dataset or use the recorded torch version.")



@dataclass
class RecomputeReport:
    """indices: the samples checked; mismatches: those whose recomputed tokens differ."""

    indices: list[int]
    mismatches: list[int]
    micro_batches: int


def recompute_samples(root: str | Path, teacher: Teacher, count: int, *, seed: int = 0,
                      device: torch.device | str = "cpu") -> RecomputeReport:
    """Re-derive `count` random samples (drawn with `seed`) with the teacher and the flow map
    and compare them with the stored tokens. Each sample is recomputed in its own micro-batch,
    so on the environment that made it the comparison is exact."""
    ds = PairsDataset(root)
    ident = ds.identity
    if teacher.fingerprint() != ident["teacher"]["fingerprint"]:
        raise PairsFileError(f"{root}: made with teacher {ident['teacher']['name']} "
                             f"(fingerprint {ident['teacher']['fingerprint'][:16]}...), not "
                             f"with {teacher.name} ({teacher.fingerprint()[:16]}...)")
    settings = settings_from_identity(ident)
    if flow_identity(settings.flow_steps) != ident["flow"]:
        raise PairsFileError(f"{root}: the flow map settings of this ardistill differ from the "
                             f"recorded ones ({ident['flow']})")
    captions = open_stored_captions(root) if ident["condition"]["kind"] == "caption" else None
    job = PairsJob(teacher, settings, captions=captions, device=device)
    rng = np.random.default_rng(seed)
    picks = sorted(int(i) for i in rng.choice(ds.num_total, min(count, ds.num_total),
                                              replace=False))
    m = settings.micro_batch
    stored = ds.read(picks)["tokens"]
    mismatches = []
    micro = sorted({i // m for i in picks})
    for mb in micro:
        block = job.compute(mb * m, m)
        for j, i in enumerate(picks):
            if i // m == mb and not np.array_equal(block.tokens[i - mb * m].numpy(), stored[j]):
                mismatches.append(i)
    return RecomputeReport(picks, mismatches, len(micro))
