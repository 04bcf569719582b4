"""Pair generation speed: pairs per second, and the flow map's share of the time.

Each preset is loaded with random weights (`load_teacher(..., random_weights=True)`: speed does
not depend on the weights, but the flow map's work does depend on how peaked the distributions
are, and random teachers give nearly flat ones inside top-k / top-p: a pessimistic case for the
flow map) and sampled with its DD settings. Timed: `PairsJob.compute` (noise regeneration,
teacher passes, filtering, flow map) over `--num` samples after a warm-up of two AR steps; the
flow map is timed call by call (with CUDA synchronisation). Wall time and this process's CPU
time are both reported: on a CPU shared with other jobs the CPU time (with one thread) is the
better estimate of what the machine would do alone. With `--compare-batch` the same
samples are also computed as one teacher session of all of them, to measure what the fixed
micro-batches (batch invariance) cost.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ardistill.bench.timing import machine_header
from ardistill.core.choosers import NoiseMap, build_noise_map
from ardistill.pairs.config import PairsSettings
from ardistill.pairs.generate import PairsJob, intra_op_threads
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.utils import dtypes


@dataclass
class Options:
    """The options of `ardistill bench pairs` (the command line's flags, same names)."""

    presets: str = 'llamagen-b,var-d16'
    num: int = 32
    micro_batch: int = 16
    batch_size: int | None = None
    flow_steps: int | None = None
    device: str = 'cpu'
    dtype: str = 'fp32'
    threads: int = 1
    compare_batch: bool = False
    quick: bool = False
    json: Path | None = None



class TimedNoiseMap:
    """Wraps a NoiseMap; accumulates its wall time (synchronising CUDA) and calls."""

    def __init__(self, inner: NoiseMap, device: torch.device) -> None:
        self.inner, self.device = inner, device
        self.seconds, self.cpu_seconds, self.calls, self.rows = 0.0, 0.0, 0, 0

    def __call__(self, noise: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        _sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.inner(noise, probs)
        _sync(self.device)
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.process_time() - c0
        self.calls += 1
        self.rows += int(np.prod(noise.shape[:-1]))
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pairs(teacher, settings: PairsSettings, batch_size: int, device) -> dict:
    """Seconds to compute `settings.num` samples (a multiple of micro_batch) in batches of
    `batch_size`, and the flow map's share."""
    device = torch.device(device)
    timer = TimedNoiseMap(build_noise_map(teacher.dd_codebook().to(device), settings.flow_steps),
                          device)
    job = PairsJob(teacher, settings, device=device, noise_map=timer)
    _warm_up(job)
    timer.seconds, timer.cpu_seconds, timer.calls, timer.rows = 0.0, 0.0, 0, 0
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for b0 in range(0, settings.num, batch_size):
        job.compute(b0, min(batch_size, settings.num - b0))
    _sync(device)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"num": settings.num, "micro_batch": settings.micro_batch, "batch_size": batch_size,
            "seconds": total, "pairs_per_s": settings.num / total,
            "flow_seconds": timer.seconds, "flow_share": timer.seconds / total,
            "cpu_seconds": cpu, "pairs_per_cpu_s": settings.num / cpu,
            "flow_cpu_share": timer.cpu_seconds / cpu,
            "flow_calls": timer.calls, "flow_rows": timer.rows}


def _warm_up(job: PairsJob) -> None:
    """Two AR steps of one micro-batch: packs weights, allocates, runs the flow map once."""
    m = job.settings.micro_batch
    cond, _ = job.conditions(np.arange(m))
    lay = job.teacher.layout
    with intra_op_threads(job.settings.threads), torch.no_grad():
        session = job.teacher.start(cond, job.sampling)
        for _step in range(min(2, lay.num_steps)):
            probs = session.next_probs()
            noise = torch.randn(*probs.shape[:2], job.teacher.codebook_dim, device=job.device)
            session.push(job.noise_map(noise, probs).long())


def _line(name: str, r: dict) -> str:
    return (f"  {name:<30} {r['pairs_per_s']:9.3f} pairs/s  ({r['seconds'] / r['num']:.3f} "
            f"s/pair)  flow map {100 * r['flow_share']:5.1f}% of the time "
            f"({r['flow_calls']} calls, {r['flow_rows']} rows)\n"
            f"  {'':<30} {r['pairs_per_cpu_s']:9.3f} pairs per CPU-second, flow map "
            f"{100 * r['flow_cpu_share']:5.1f}% of the CPU time (this process: the numbers "
            "a machine shared with other jobs would show alone)")


def _bench_preset(name: str, args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    teacher = load_teacher(name, random_weights=True, device=device,
                           dtype=dtypes.resolve(args.dtype, args.device))
    m = 2 if args.quick else args.micro_batch
    num = m if args.quick else -(-args.num // m) * m
    settings = PairsSettings(num=num, micro_batch=m, shard_size=num, threads=args.threads,
                             dtype=args.dtype, flow_steps=args.flow_steps)
    s = teacher.default_sampling
    print(f"{name}: {teacher.layout.num_positions} tokens in {teacher.layout.num_steps} steps, "
          f"V={teacher.vocab_size}, cfg {s.cfg_scale}, top-k {s.top_k}, top-p {s.top_p}, "
          f"{args.dtype}, {device}, {args.threads} thread(s)", flush=True)
    batch = args.batch_size or num
    res = [{"preset": name, **time_pairs(teacher, settings, batch, device)}]
    print(_line(f"micro-batch {m}, batch {batch}", res[0]), flush=True)
    if args.compare_batch and num > m:
        whole = PairsSettings(num=num, micro_batch=num, shard_size=num, threads=args.threads,
                              dtype=args.dtype, flow_steps=args.flow_steps)
        res.append({"preset": name, **time_pairs(teacher, whole, num, device)})
        print(_line(f"one session of {num}", res[1]) + f"  -> micro-batches cost "
              f"{100 * (res[1]['pairs_per_s'] / res[0]['pairs_per_s'] - 1):.0f}%", flush=True)
    return res


def run(args: Options) -> int:
    known = all_presets()
    print(machine_header(dtypes.name_of(dtypes.resolve(args.dtype, args.device)), args.device),
          flush=True)
    results = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        if name not in known:
            print(f"{name}: no such preset in this build, skipped", flush=True)
            continue
        results += _bench_preset(name, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0
