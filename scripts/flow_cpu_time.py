"""CPU time per flow-map call, one thread, for A/B comparisons of `ardistill.flow` versions.

    python scripts/flow_cpu_time.py [big|small|all] [repeats]
    PYTHONPATH=OTHER_TREE/src python scripts/flow_cpu_time.py big 3    # the other version

Cases: the benchmark settings of `ardistill bench flow` (LlamaGen-like V 16384, VAR-like V 4096,
flat / peaked, 256 rows, `make_flow_problem(..., seed=1)`) and, with `small`, the shipped MNIST
teachers' DD codebooks (V 256) with softmax(std * N(0, 1)) rows over all entries, std 1 (flat)
or 4.5 (peaked). Prints the best `time.process_time()` of `repeats` calls after a warm-up (CPU
time: robust to a shared machine), the mean evaluation counts, and an md5 of the tokens so two
versions can be checked to return the same tokens. docs/flow.md quotes its output.
"""

from __future__ import annotations

import hashlib
import sys
import time

import torch

from ardistill.flow import FlowMap
from ardistill.flow.reference import make_flow_problem


def _mnist_problem(preset: str, rows: int, std: float, seed: int = 1):
    from ardistill.teachers.registry import load_teacher

    C = load_teacher(preset).dd_codebook().float().cpu()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(rows, C.shape[1], generator=g)
    probs = torch.softmax(std * torch.randn(rows, C.shape[0], generator=g), -1)
    return noise, probs, C


def cases(which: str):
    out = []
    if which in ("big", "all"):
        for name in ("llamagen", "var"):
            for dist, std in (("flat", 1.0), ("peaked", 4.5)):
                out.append((f"{name} {dist} B=256",
                            lambda n=name, s=std: make_flow_problem(n, 256, s, seed=1)))
    if which in ("small", "all"):
        for name, sizes in (("mnist-llamagen", (16, 256)), ("mnist-var", (256, 4096))):
            for dist, std in (("flat", 1.0), ("peaked", 4.5)):
                for rows in sizes:
                    out.append((f"{name} {dist} B={rows}",
                                lambda n=name, r=rows, s=std: _mnist_problem(n, r, s)))
    if not out:
        raise SystemExit(f"unknown case set {which!r}: big, small or all")
    return out


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(1)
    with torch.inference_mode():
        for label, make in cases(which):
            noise, probs, C = make()
            fm = FlowMap(C)
            fm.solve(noise, probs)  # warm-up
            best, r = float("inf"), None
            for _ in range(repeats):
                c0 = time.process_time()
                r = fm.solve(noise, probs)
                best = min(best, time.process_time() - c0)
            md5 = hashlib.md5(r.tokens.numpy().tobytes()).hexdigest()[:8]
            print(f"{label:28s} cpu {best * 1e3:8.1f} ms  full {r.full_evals.float().mean():.2f} "
                  f"pruned {r.pruned_evals.float().mean():.2f} tok {md5}", flush=True)


if __name__ == "__main__":
    main()
