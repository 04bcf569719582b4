"""Seconds of `teacher.start` for LlamaGen-B at pair generation's batch (256, CFG: 512 rows),
three times in one process, each session finished so that its KV cache goes back to the
teacher's pool (`teachers/cache_pool.py`): the first start allocates the 9.7 GB cache (since
session 11 uninitialised: its pages are touched as positions are written), the next ones
reuse it. User and system CPU time beside the wall time (docs/teachers.md).

    python scripts/session_start.py [--batch 256] [--starts 3]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from ardistill.bench.timing import machine_header
from ardistill.teachers.registry import load_teacher


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="llamagen-b")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--starts", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(machine_header("fp32"))
    teacher = load_teacher(args.preset, random_weights=True, device="cpu", dtype=torch.float32)
    cond = teacher.sample_conditions(args.batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for i in range(args.starts):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            s = teacher.start(cond, teacher.default_sampling)
            r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
            print(f"start {i}: wall {wall:.1f} s, user {r1.ru_utime - r0.ru_utime:.1f} s, "
                  f"sys {r1.ru_stime - r0.ru_stime:.1f} s", flush=True)
            s.step = s.num_tokens - 1  # finish it: the cache goes back to the pool
            s.push(torch.zeros(args.batch, 1, dtype=torch.long))


if __name__ == "__main__":
    main()
