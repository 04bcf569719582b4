"""The one map from dtype names to torch dtypes, and `auto`: the inference dtype that is fast
on this machine.

Commands take the short names (`fp32`, `bf16`, `fp16`); the long names (`float32`, ...) are
accepted too, and are what pairs datasets record in their identity (`long_name`). Inference
commands (sample, bench, the app) also take `auto`, their default: bf16 where it is fast (CUDA
with bf16 support; CPUs with AMX or avx512_bf16 whose bf16 matmul also measures faster than
fp32 in a tiny timed check), fp32 elsewhere. The probe runs once per process and is logged on
stderr; `ARDISTILL_AUTO_DTYPE=fp32|bf16` overrides it (the test suite pins fp32).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16,
                                  "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_LONG = {v: k for k, v in _ALIASES.items()}
DTYPE_CHOICES = tuple(DTYPES)
AUTO = "auto"
INFERENCE_CHOICES = (AUTO, *DTYPE_CHOICES)
AUTO_ENV = "ARDISTILL_AUTO_DTYPE"


def canonical(name: str) -> str:
    """'float32' | 'fp32' -> 'fp32', 'auto' -> 'auto'; ValueError naming the choices
    otherwise."""
    short = _ALIASES.get(name, name)
    if short not in DTYPES and short != AUTO:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(INFERENCE_CHOICES)}")
    return short


def resolve(name: str, device: str | torch.device = "cpu") -> torch.dtype:
    """A dtype name (short, long or 'auto' for `device`) -> torch.dtype."""
    short = canonical(name)
    return DTYPES[auto_name(str(torch.device(device).type)) if short == AUTO else short]


@dataclass(frozen=True)
class Probe:
    """What `auto` looked at. bf16_kernels: the CPU has AMX or avx512_bf16 (CUDA: bf16
    support); speedup: fp32 time / bf16 time of a small matmul (None: not timed)."""

    device: str
    bf16_kernels: bool
    features: tuple[str, ...]
    speedup: float | None


def choose(probe: Probe, min_speedup: float = 1.2) -> tuple[str, str]:
    """(dtype name, reason) of `auto` for what the probe found (pure: tested for both
    outcomes)."""
    if probe.device == "cuda":
        return ("bf16", "CUDA with bf16") if probe.bf16_kernels else ("fp32", "CUDA without "
                                                                       "bf16 support")
    feats = ", ".join(probe.features) or "no AMX / avx512_bf16"
    if not probe.bf16_kernels:
        return "fp32", f"CPU has {feats}: bf16 would be emulated"
    if probe.speedup is not None and probe.speedup < min_speedup:
        return "fp32", f"CPU has {feats} but bf16 matmul measured {probe.speedup:.2f}x fp32"
    sp = "" if probe.speedup is None else f"; bf16 matmul {probe.speedup:.1f}x fp32"
    return "bf16", f"CPU has {feats}{sp}"


def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU's bf16 matmul features torch can use: 'amx', 'avx512_bf16' (torch's own
    checks, else /proc/cpuinfo's flags)."""
    found = []
    cpu = getattr(torch._C, "_cpu", None)
    checks = {"amx": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    if cpu is not None and all(hasattr(cpu, f) for f in checks.values()):
        found = [k for k, f in checks.items() if getattr(cpu, f)()]
    else:
        try:
            flags = set(open("/proc/cpuinfo").read().split())
        except OSError:
            flags = set()
        found = [k for k, flag in (("amx", "amx_bf16"), ("avx512_bf16", "avx512_bf16"))
                 if flag in flags]
    return tuple(found)


def bf16_speedup(n: int = 384, reps: int = 5) -> float:
    """fp32 / bf16 time of an (n x n) @ (n x n) matmul on the CPU, best of `reps` each."""
    def best(dtype):
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        a @ b  # warm-up: kernel selection
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(4):
                a @ b
            times.append(time.perf_counter() - t0)
        return min(times)
    return best(torch.float32) / max(best(torch.bfloat16), 1e-9)


def probe(device: str) -> Probe:
    if device == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return Probe("cuda", bool(ok), (), None)
    feats = cpu_bf16_features()
    return Probe("cpu", bool(feats), feats, bf16_speedup() if feats else None)


@functools.cache
def auto_name(device: str = "cpu") -> str:
    """'fp32' or 'bf16' for `auto` on this machine's `device` type (probed once, logged)."""
    forced = os.environ.get(AUTO_ENV)
    if forced:
        name = canonical(forced)
        if name == AUTO:
            raise ValueError(f"{AUTO_ENV} must name a dtype, not auto")
        return name
    name, reason = choose(probe(device))
    print(f"ardistill: --dtype auto -> {name} on {device} ({reason})", file=sys.stderr)
    return name


def long_name(name: str) -> str:
    """'fp32' | 'float32' -> 'float32' (the spelling recorded in pairs datasets)."""
    short = canonical(name)
    if short == AUTO:
        raise ValueError("auto is an inference dtype; record the resolved one")
    return _LONG[short]


def name_of(dtype: torch.dtype) -> str:
    """torch.float32 -> 'fp32'."""
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    raise ValueError(f"no ardistill name for {dtype}")
