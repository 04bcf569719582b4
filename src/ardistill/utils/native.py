"""Compiled CPU kernels built on first use with the machine's C compiler, and loaded by ctypes.

A kernel is one C file (it may include `native_vec.h` and `native_team.h` from this folder:
vectors, and ranges run on torch's OpenMP threads). It is compiled with `$CC`, else `cc`
(`-O3 -march=native`, no reassociation), into `cache_dir()`, one file per source, headers,
flags and CPU (a home directory shared between machines never runs another CPU's build),
written atomically. When there is no compiler, the build fails, or
`ARDISTILL_NATIVE=0`, `NativeLibrary.available()` is False with the reason in `why`, and the
caller keeps its PyTorch path. ctypes releases the GIL while a kernel runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

_logger = logging.getLogger(__name__)

HEADERS = (Path(__file__).with_name("native_vec.h"), Path(__file__).with_name("native_team.h"))
# No -ffast-math / -fassociative-math: the kernels fix their own summation order, and a
# compiler free to reassociate may order one row's sums differently in two code paths
# (measured in the flow kernel: a row's result then depended on its neighbours).
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
         "-fPIC", "-shared")


def _cpu_key() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return "\n".join([platform.machine(), platform.processor(), *lines])


def cache_dir() -> Path:
    """`$ARDISTILL_CACHE/native`, else `$XDG_CACHE_HOME/ardistill/native`, else
    `~/.cache/ardistill/native`."""
    root = os.environ.get("ARDISTILL_CACHE")
    if root:
        return Path(root) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ardistill" / "native"


def build(source: Path, name: str) -> ctypes.CDLL:
    """Compile `source` (or find its build in `cache_dir()`) and load it. Raises RuntimeError
    naming the problem when there is no compiler or it fails."""
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler ({cc!r} not on PATH)")
    text = source.read_bytes() + b"".join(h.read_bytes() for h in HEADERS)
    key = hashlib.sha256(text + " ".join((cc, *FLAGS)).encode() + _cpu_key().encode())
    out = cache_dir() / f"{name}_{key.hexdigest()[:16]}.so"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            part = Path(tmp) / out.name
            cmd = [cc, *FLAGS, f"-I{HEADERS[0].parent}", str(source), "-o", str(part), "-lm"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:400]}")
            os.replace(part, out)
    return ctypes.CDLL(str(out))


def openmp_team() -> tuple[int, int, int] | None:
    """(GOMP_parallel, omp_get_thread_num, omp_get_num_threads) of the OpenMP runtime torch
    runs its CPU ops on, or None (not Linux, another parallel backend, no such runtime)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    paths = {ln.split()[-1] for ln in maps if ln.split()[-1].endswith((".so", ".so.1", ".so.5"))}
    torch_dir = str(Path(torch.__file__).resolve().parent)
    # torch's own copy first (another library may have loaded a second runtime)
    for path in sorted(paths, key=lambda q: (not q.startswith(torch_dir), q)):
        if Path(path).name.startswith(("libgomp", "libiomp5")):
            try:
                rt = ctypes.CDLL(path)
                return tuple(ctypes.cast(getattr(rt, n), ctypes.c_void_p).value for n in (
                    "GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads"))
            except (OSError, AttributeError):
                continue
    return None


def set_openmp_team(lib: ctypes.CDLL) -> bool:
    """Hand torch's OpenMP runtime to a kernel built with `native_team.h` (its `ard_set_openmp`);
    False where there is none (the kernel then runs every range on the calling thread)."""
    lib.ard_set_openmp.restype = None
    lib.ard_set_openmp.argtypes = [ctypes.c_void_p] * 3
    team = openmp_team()
    if team is not None:
        lib.ard_set_openmp(*team)
    return team is not None


class NativeLibrary:
    """One compiled kernel file, built or loaded on the first `available()`.

    declare(lib) sets the functions' ctypes signatures. `state` holds "lib" (the CDLL, or
    None when unavailable) and "why" (the reason); `reset()` forgets both."""

    def __init__(self, source: Path, name: str, declare: Callable[[ctypes.CDLL], None],
                 what: str) -> None:
        self.source, self.name, self.declare, self.what = source, name, declare, what
        self.state: dict = {}

    def available(self) -> bool:
        """Whether the kernel can run here (False with `ARDISTILL_NATIVE=0`)."""
        if os.environ.get("ARDISTILL_NATIVE", "1") == "0":
            return False
        if "lib" not in self.state:
            try:
                lib = build(self.source, self.name)
                self.declare(lib)
                self.state["lib"] = lib
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                self.state["lib"] = None
                self.state["why"] = str(e)
                _logger.info("%s: compiled kernel unavailable (%s); using PyTorch", self.what, e)
        return self.state["lib"] is not None

    @property
    def why(self) -> str:
        """Why `available()` is False ("" when it is True)."""
        if os.environ.get("ARDISTILL_NATIVE", "1") == "0":
            return "disabled by ARDISTILL_NATIVE=0"
        return "" if self.available() else self.state.get("why", "")

    @property
    def lib(self) -> ctypes.CDLL:
        return self.state["lib"]

    def reset(self) -> None:
        """Forget the loaded kernel (the next `available()` builds or loads it again)."""
        self.state.clear()
