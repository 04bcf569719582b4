"""A/B timing of versions of the flow map's sums pass (`flow/posterior_kernel.c`), bitwise checked.

    python scripts/flow_kernel_ab.py OLD.c NEW.c [...] [--repeats 5] [--std 1.0,4.5]
    git show HEAD~1:src/ardistill/flow/posterior_kernel.c > /tmp/old.c   # an older version

Records every `posterior_sums` call of one solve of the `bench flow` problem at batch 256
(`make_flow_problem(setting, 256, std, seed=1)`, LlamaGen-like by default; the Python step
loop, so that every evaluation goes through that wrapper), builds each source with the flags
of `utils.native`, and replays the recorded calls through each build in turn (alternating, so
that the VM's drifts hit every build alike; best of `repeats`). Prints ms per solve's worth of
calls, ns per codebook entry, and whether each build's outputs (D, mz, lb) equal the first
build's bit for bit. One thread (torch's and the kernel's: each call gets nthreads 1).
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import ardistill.flow.native as native
from ardistill.flow import FlowMap
from ardistill.flow.reference import make_flow_problem
from ardistill.utils.native import FLAGS, HEADERS


def record(setting: str, std: float) -> dict:
    noise, probs, C = make_flow_problem(setting, 256, std, seed=1)
    fm = FlowMap(C, native_loop=False)  # every evaluation through native.posterior_sums
    calls, orig = [], native.posterior_sums

    def rec(yaug, logp, rows, packed, thr):
        calls.append((yaug.clone(), rows.clone()))
        return orig(yaug, logp, rows, packed, thr)

    native.posterior_sums = rec
    try:
        with torch.inference_mode():
            fm.solve(noise, probs)
    finally:
        native.posterior_sums = orig
    return dict(calls=calls, logp=fm.workspace(probs.shape).clone(), packed=fm.packed,
                thr=fm.prune_threshold)


def build(src: Path, out: Path) -> ctypes.CDLL:
    inc = sorted({str(h.parent) for h in HEADERS})
    subprocess.check_call(["cc", *FLAGS, *(f"-I{d}" for d in inc), "-o", str(out), str(src)])
    lib = ctypes.CDLL(str(out))
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    # versions from the multi-threaded one on take a thread count first (1 here)
    lib.threads_arg = "ard_posterior_sums(int nthreads" in src.read_text()
    lib.ard_posterior_sums.restype = i32
    lib.ard_posterior_sums.argtypes = [i32] * lib.threads_arg + [i32, i32, i32, p, p, i64, p,
                                                                 p, f32, p, p, p]
    return lib


def replay(lib: ctypes.CDLL, data: dict) -> tuple[float, list]:
    logp, packed = data["logp"], data["packed"]
    V, seconds, outs = logp.shape[1], 0.0, []
    for yaug, rows in data["calls"]:
        n, k1 = yaug.shape
        D = torch.empty(n, k1 - 1, dtype=torch.float64)
        mz, lb = torch.empty(n, 2), torch.empty(n)
        t0 = time.perf_counter()
        status = lib.ard_posterior_sums(*[1] * lib.threads_arg, n, V, k1, yaug.data_ptr(),
                                        logp.data_ptr(), logp.stride(0), rows.data_ptr(),
                                        packed.data_ptr(), data["thr"], D.data_ptr(),
                                        mz.data_ptr(), lb.data_ptr())
        seconds += time.perf_counter() - t0
        if status:
            raise RuntimeError(f"kernel status {status}")
        outs.append((D, mz, lb))
    return seconds, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--std", default="1.0,4.5", help="logit std of the problems (flat, peaked)")
    ap.add_argument("--setting", default="llamagen", choices=["llamagen", "var"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        libs = [build(s, Path(tmp) / f"v{i}.so") for i, s in enumerate(args.sources)]
        for std in (float(s) for s in args.std.split(",")):
            data = record(args.setting, std)
            entries = sum(r.numel() for _, r in data["calls"]) * data["logp"].shape[1]
            best, outs = [float("inf")] * len(libs), [None] * len(libs)
            for _ in range(args.repeats):
                for i, lib in enumerate(libs):
                    sec, outs[i] = replay(lib, data)
                    best[i] = min(best[i], sec)
            for i, src in enumerate(args.sources):
                same = all(all(torch.equal(a, b) for a, b in zip(o, o0))
                           for o, o0 in zip(outs[i], outs[0]))
                print(f"std {std:4.1f} {str(src):40s} {1e3 * best[i]:7.1f} ms "
                      f"{1e9 * best[i] / entries:6.3f} ns/entry  same as first: {same}",
                      flush=True)


if __name__ == "__main__":
    main()
