"""Timing that can be trusted on shared, noisy machines: warm up until steady (kernel
selection, allocator growth and compilation excluded), then `repeats` timed calls, reporting
median and min with their count; and a header naming the machine, so every printed number
says where it was measured.

    t = steady_time(lambda: model(x), repeats=5, device=device)
    print(t.text())                       # "12.3 ms (median of 5, min 12.1; 3 warm-up)"
    print(machine_header("bf16", "cpu"))  # CPU model, features, threads, torch, dtype
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ardistill.errors import UserError
from ardistill.utils.dtypes import cpu_bf16_features


@dataclass(frozen=True)
class Timing:
    """Seconds of one call: median and min of `repeats` timed calls after `warmup` untimed
    ones; result: the last call's return value."""

    median: float
    min: float
    repeats: int
    warmup: int
    runs: tuple[float, ...]
    result: object = None

    def text(self, scale: float = 1e3, unit: str = "ms") -> str:
        return (f"{self.median * scale:.4g} {unit} (median of {self.repeats}, min "
                f"{self.min * scale:.4g}; {self.warmup} warm-up)")


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _warm_up(fn: Callable[[], object], device, min_warmup: int, max_warmup: int,
             tolerance: float) -> tuple[int, object]:
    """Untimed calls until two consecutive ones agree within `tolerance` (at least
    `min_warmup`, at most `max_warmup`). Returns (calls, last result)."""
    prev, warm, out = None, 0, None
    while warm < max_warmup:
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        dt = time.perf_counter() - t0
        warm += 1
        if warm >= min_warmup and prev is not None and abs(dt - prev) <= tolerance * max(prev, dt):
            break
        prev = dt
    return warm, out


def steady_time(fn: Callable[[], object], repeats: int, device="cpu", *, min_warmup: int = 1,
                max_warmup: int = 8, tolerance: float = 0.10) -> Timing:
    """Warm up until two consecutive untimed calls agree within `tolerance` (at least
    `min_warmup`, at most `max_warmup` calls), then time `repeats` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    warm, out = _warm_up(fn, device, min_warmup, max_warmup, tolerance)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        runs.append(time.perf_counter() - t0)
    return Timing(statistics.median(runs), min(runs), repeats, warm, tuple(runs), out)


def interleaved_times(fns: list[Callable[[], object]], repeats: int, device="cpu", *,
                      min_warmup: int = 1, max_warmup: int = 8,
                      tolerance: float = 0.10) -> list[Timing]:
    """Side-by-side timings: every fn warmed up as in `steady_time`, then `repeats` rounds
    that call each fn once, the order rotated by one every round. A slow phase of a shared
    machine then lands on every fn alike instead of on whichever ran during it, so the
    ratios of the medians are steadier than those of timings taken one after another."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    warm = [_warm_up(fn, device, min_warmup, max_warmup, tolerance)[0] for fn in fns]
    runs: list[list[float]] = [[] for _ in fns]
    outs: list[object] = [None] * len(fns)
    for r in range(repeats):
        for j in range(len(fns)):
            i = (j + r) % len(fns)
            t0 = time.perf_counter()
            outs[i] = fns[i]()
            _sync(device)
            runs[i].append(time.perf_counter() - t0)
    return [Timing(statistics.median(x), min(x), repeats, w, tuple(x), o)
            for x, w, o in zip(runs, warm, outs)]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> tuple[str, ...]:
    """The vector features that decide speed here: avx2, avx512f, and bf16 matmul units."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    base = tuple(f for f in ("avx2", "avx512f") if f in flags)
    return base + tuple(f for f in cpu_bf16_features() if f not in base)


def machine_header(dtype: str, device: str = "cpu") -> str:
    """One line: the device (CPU model and features, or the GPU), threads, torch, dtype."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        where = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        where = f"CPU {cpu_model()} [{', '.join(cpu_features()) or 'no avx2'}]"
    return (f"{where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"dtype {dtype}")


def int8_run(enable: Callable[[], None], disable: Callable[[], None],
             run: Callable[[], dict]) -> tuple[dict | None, str]:
    """`run()` with a model's int8 path on (`bench student|teacher --int8`): (its result, "")
    or (None, the reason) when `enable` raises UserError; the float path is back after."""
    try:
        enable()
    except UserError as e:
        return None, str(e)
    try:
        return run(), ""
    finally:
        disable()
