"""`generate_pairs`: make (or finish) a pairs dataset, on one process or many (torchrun).

1. Rank 0 prepares the folder: writes `config.json` (the identity) or checks that the one there
   is identical (else a clear error: datasets are never mixed), stores the caption copy,
   deletes stale temporary files, and lists the shards that are not complete.
2. Those shards are dealt round-robin to the ranks; each computes its shards batch by batch
   (`PairsJob.compute`) and writes each one atomically when it is whole.
3. After a barrier rank 0 checks that every shard is complete and only then writes
   `manifest.json`. A killed run leaves at most temporary files and shards without sidecars,
   both recomputed by the same command.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ardistill.core.captions import Captions
from ardistill.core.choosers import flow_identity
from ardistill.core.pairs_format import (
    CONFIG,
    MANIFEST,
    build_manifest,
    read_json,
    sidecar_name,
    store_captions,
)
from ardistill.errors import PairsFileError, SettingsMismatch
from ardistill.pairs.config import (
    GenOptions,
    PairsSettings,
    dataset_identity,
    environment,
    identity_diff,
)
from ardistill.pairs.generate import PairsJob, SampleBlock
from ardistill.pairs.shards import shard_state, write_shard
from ardistill.teachers.base import Teacher
from ardistill.utils.dist import DistContext
from ardistill.utils.files import atomic_write_json, is_tmp
from ardistill.utils.locks import LOCK_NAME, output_folder


@dataclass
class RunReport:
    """What one process did: shards it computed, samples, seconds; on rank 0 also whether the
    manifest is now written and how many shards were already complete."""

    out: Path
    shards_done: int
    samples: int
    seconds: float
    complete: bool = False
    shards_skipped: int = 0

    @property
    def pairs_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def generate_pairs(
    teacher: Teacher,
    settings: PairsSettings,
    out: str | Path,
    *,
    options: GenOptions | None = None,
    captions: Captions | None = None,
    spec: str | None = None,
    dist: DistContext | None = None,
    device: torch.device | str | None = None,
) -> RunReport:
    """Generate (or resume) the dataset in `out`. The teacher must already be on `device`
    (default `options.device`; the CLI passes cuda:LOCAL_RANK). spec: how the teacher was
    named on the command line (recorded for information)."""
    options = options or GenOptions()
    dist = dist or DistContext()
    out = Path(out)
    if options.batch_size < 1 or options.batch_size % settings.micro_batch:
        raise ValueError(f"batch_size ({options.batch_size}) must be a positive multiple of "
                         f"micro_batch ({settings.micro_batch})")
    device = torch.device(device if device is not None else options.device)
    job = PairsJob(teacher, settings, captions=captions, device=device)
    cond = captions.identity() if captions else {"kind": "class", "classes": list(job.classes)}
    identity = dataset_identity(teacher, settings, condition=cond,
                                flow=flow_identity(settings.flow_steps), spec=spec)
    with contextlib.ExitStack() as held:  # rank 0 holds the folder's lock for the whole run

        def lock_and_prepare() -> dict:
            held.enter_context(output_folder(out, what="pairs folder"))
            return prepare_folder(out, identity, settings, captions)

        plan = dist.on_main(lock_and_prepare)
        if not dist.is_main:  # every rank must describe the same dataset (same files)
            diff = identity_diff(plan["identity"], identity)
            if diff:
                raise SettingsMismatch(f"rank {dist.rank} differs from rank 0: "
                                       + "; ".join(diff))
        mine = plan["pending"][dist.rank :: dist.world_size]
        t0 = time.perf_counter()
        samples = _run_shards(job, settings, out, mine, identity, options, dist, device)
        seconds = time.perf_counter() - t0
        dist.barrier()
        complete = dist.on_main(lambda: finalize(out, identity, settings,
                                                 plan["captions_sha256"]))
    return RunReport(out, len(mine), samples, seconds, bool(complete),
                     settings.num_shards - len(plan["pending"]))


def prepare_folder(out: Path, identity: dict, settings: PairsSettings,
                   captions: Captions | None) -> dict:
    """Rank 0: create or check `out`; returns {"pending": [shard ids], "identity",
    "captions_sha256"}."""
    cfg_path = out / CONFIG
    if cfg_path.is_file():
        recorded = read_json(cfg_path, "config.json")
        diff = identity_diff(recorded, identity)
        if diff:
            raise SettingsMismatch(
                f"{out} holds a dataset made with other settings; refusing to mix them. "
                "Differences:\n  " + "\n  ".join(diff) +
                "\nUse another --out folder, or the recorded settings to finish this one.")
    else:
        foreign = [p.name for p in out.iterdir() if not is_tmp(p) and p.name != LOCK_NAME]
        if foreign:
            raise SettingsMismatch(f"{out} is not empty and holds no pairs dataset "
                                   f"(found {', '.join(sorted(foreign)[:5])})")
        atomic_write_json(cfg_path, identity)
    cap_sha = store_captions(out, captions) if captions is not None else None
    for p in out.iterdir():
        if is_tmp(p):  # left by a killed run; no rank writes before the plan is out
            p.unlink(missing_ok=True)
    pending = []
    for k in range(settings.num_shards):
        first, stop = settings.shard_range(k)
        record, reason = shard_state(out, k, first, stop - first)
        if record is None:
            pending.append(k)
            if reason != "not written":
                print(f"gen-pairs: shard {k} is recomputed ({reason})", file=sys.stderr)
                (out / sidecar_name(k)).unlink(missing_ok=True)
    return {"pending": pending, "identity": identity, "captions_sha256": cap_sha}


def _run_shards(job: PairsJob, settings: PairsSettings, out: Path, shards: list[int],
                identity: dict, options: GenOptions, dist: DistContext,
                device: torch.device) -> int:
    total = sum(settings.shard_range(k)[1] - settings.shard_range(k)[0] for k in shards)
    bar = tqdm(total=total, unit="pair", dynamic_ncols=True, smoothing=0.05,
               desc=f"gen-pairs rank 0/{dist.world_size}" if dist.world_size > 1 else "gen-pairs",
               disable=not (options.progress and dist.is_main))
    env = environment(device)
    done = 0
    try:
        for k in shards:
            t0 = time.perf_counter()
            block = _compute_shard(job, settings, k, options.batch_size, bar)
            write_shard(out, k, block, identity, env, time.perf_counter() - t0)
            done += len(block.index)
    finally:
        bar.close()
    return done


def _compute_shard(job: PairsJob, settings: PairsSettings, k: int, batch_size: int,
                   bar: tqdm) -> SampleBlock:
    """All samples of shard k, in batches of whole micro-batches (the last micro-batch of the
    dataset is completed with the samples that follow it, computed and dropped)."""
    first, stop = settings.shard_range(k)
    m = settings.micro_batch
    end = first + -(-(stop - first) // m) * m
    blocks = []
    for b0 in range(first, end, batch_size):
        n = min(batch_size, end - b0)
        blocks.append(job.compute(b0, n))
        bar.update(max(0, min(n, stop - b0)))
    return SampleBlock.cat(blocks).head(stop - first)


def finalize(out: Path, identity: dict, settings: PairsSettings,
             captions_sha256: str | None) -> bool:
    """Rank 0, after every rank is done: write the manifest iff every shard is complete."""
    records, missing = [], []
    for k in range(settings.num_shards):
        first, stop = settings.shard_range(k)
        record, reason = shard_state(out, k, first, stop - first)
        if record is None:
            missing.append(f"shard {k}: {reason}")
        records.append(record)
    if missing:
        raise PairsFileError(f"{out}: {len(missing)} shard(s) incomplete after every process "
                             "finished; manifest.json not written: " + "; ".join(missing[:5]))
    if (out / MANIFEST).is_file():
        return True
    atomic_write_json(out / MANIFEST, build_manifest(identity, records, captions_sha256))
    return True
