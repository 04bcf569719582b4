"""The linear-layer measurements behind `--int8` (docs/student-llamagen.md, docs/teachers.md):

1. the student's shapes (257 rows, one 1-step LlamaGen-B forward at batch 1): GFLOP/s of each
   product alone in fp32 (MKL `x @ w.T` and oneDNN's packed linear) and in int8
   (`torch.ops.quantized.linear_dynamic`, the `--int8` path), median of `--repeats`;
2. the teacher's decode step (2 rows: CFG at batch 1) with weights read from memory (24
   distinct weights cycled, more than the L3 cache): microseconds per product in fp32 (packed),
   int8, and torch's weight-only `_weight_int8pack_mm`.

    python scripts/cpu_products.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ardistill.bench.timing import machine_header
from ardistill.teachers.fast_linear import int8_weight


def median_s(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_header("fp32 / int8"))
    g = torch.Generator().manual_seed(0)
    print(f"student shapes, 257 rows: GFLOP/s (median of {args.repeats})")
    print(f"{'K x N':>12} {'mm':>7} {'packed':>7} {'int8':>7}")
    for K, N in ((768, 2304), (768, 2048), (2048, 768), (768, 768)):
        x = torch.randn(257, K, generator=g)
        w = torch.randn(N, K, generator=g) * 0.02
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        q = torch.ops.quantized.linear_prepack(int8_weight(w), None)
        flop = 2 * 257 * K * N
        fns = (lambda x=x, w=w: x @ w.T,
               lambda x=x, pw=packed: torch.ops.mkldnn._linear_pointwise(x, pw, None, "none",
                                                                         [], ""),
               lambda x=x, pq=q: torch.ops.quantized.linear_dynamic(x, pq, True))
        with torch.no_grad():
            rates = [flop / median_s(f, args.repeats) / 1e9 for f in fns]
        print(f"{K:>5} x {N:<5}" + "".join(f" {r:7.0f}" for r in rates))
    K, N, L = 768, 2048, 24
    x = torch.randn(2, K, generator=g)
    ws = [torch.randn(N, K, generator=g) * 0.02 for _ in range(L)]
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in ws]
    q = [torch.ops.quantized.linear_prepack(int8_weight(w), None) for w in ws]
    w8 = [(torch.round(w / (w.abs().amax(1, keepdim=True) / 127)).to(torch.int8),
           w.abs().amax(1) / 127) for w in ws]
    print(f"teacher step shape, 2 rows x {K} x {N}, {L} weights cycled: us per product")
    with torch.no_grad():
        for name, fn in (
                ("fp32 packed", lambda: [torch.ops.mkldnn._linear_pointwise(
                    x, pw, None, "none", [], "") for pw in packed]),
                ("int8 (--int8)", lambda: [torch.ops.quantized.linear_dynamic(x, pq, True)
                                           for pq in q]),
                ("_weight_int8pack_mm", lambda: [torch.ops.aten._weight_int8pack_mm(x, a, s)
                                                 for a, s in w8])):
            print(f"  {name:<20} {median_s(fn, max(3, args.repeats // 6)) / L * 1e6:8.0f}")


if __name__ == "__main__":
    main()
