"""The full-codebook posterior as a compiled CPU kernel (`posterior_kernel.c`), with the PyTorch
path as the fallback.

`kernels.full_posterior` (an addmm, a softmax and a GEMM over each `(R, V)` block) plus the
pruning count made about 60% of the exact flow map's time on LlamaGen-like problems, each a
pass over the block through memory. The C kernel walks the codebook in tiles with an online
softmax: one pass gives the denoiser, the largest weight and a lower bound on the pruning
count; for the rows that may prune, a second pass over the logits finds the entries above the
pruning threshold (`posterior_prune`). Once pruned, a row's steps and its collapse certificate
run here too, in float64 (`pruned_denoiser`, `collapse_margin`; docs/flow.md, "The compiled
posterior kernel"), and so does the solver's loop itself (`flow_step`, `flow_decide`: one call
per step, the same floats as `solver._Chunk`'s Python loop). Every kernel splits its rows over
torch's OpenMP threads (`threads_for`); a row's floats do not depend on the thread count.

It is built on first use with the machine's C compiler (`$CC`, else `cc`; `-O3 -march=native`)
into `utils.native.cache_dir()`, one file per source, flags and CPU (a home directory shared
between machines never runs another CPU's build), written atomically. When there is no
compiler, the build fails, or `ARDISTILL_NATIVE=0`, `available()` is False and `FlowMap` keeps
the PyTorch path (the reason is logged once); so it does for float64 compute, CUDA tensors and
codebook sizes that are not a multiple of 8. Both paths give a row the same floats whatever the
rows around it; they differ from each other by float32 rounding (tokens: the same up to
near-ties; tests/flow/test_native.py).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

import ardistill.flow.kernels as K
from ardistill.utils.native import NativeLibrary, set_openmp_team

SOURCE = Path(__file__).with_name("posterior_kernel.c")


def _declare(lib: ctypes.CDLL) -> None:
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    f64 = ctypes.c_double
    lib.ard_posterior_sums.restype = i32
    lib.ard_posterior_sums.argtypes = [i32, i32, i32, i32, p, p, i64, p, p, f32, p, p, p]
    lib.ard_count_above.restype = None
    lib.ard_count_above.argtypes = [i32, i32, p, i64, p, f32, p]
    lib.ard_log.restype = None
    lib.ard_log.argtypes = [i32, i64, p, p]
    lib.ard_posterior_prune.restype = i32
    lib.ard_posterior_prune.argtypes = [i32, i32, i32, i32, p, p, i64, p, p, p, f32, i32, p, p]
    lib.ard_pruned_denoiser.restype = i32
    lib.ard_pruned_denoiser.argtypes = [i32, i32, i32, i32, p, p, p, p, p, p, p, p]
    lib.ard_collapse_margin.restype = i32
    lib.ard_collapse_margin.argtypes = [i32, i32, i32, i32, p, p, p, p, p, p, p, p]
    lib.ard_flow_step.restype = i32
    lib.ard_flow_step.argtypes = [i32, i32, i32, p, i32, i32, i32, i32, p, p, p, i32, i32, p, p,
                                  f64, i32, f32, p, i64, p, f32, p, p, p, p, p, p, p, p, p]
    lib.ard_flow_decide.restype = i32
    lib.ard_flow_decide.argtypes = [i32, p, i32, i32, i32, p, f64, f64, p, p, f64, f64, p, p, p,
                                    p, p]
    lib.ardistill_team = set_openmp_team(lib)


_LIB = NativeLibrary(SOURCE, "posterior", _declare, "flow map")
_state = _LIB.state


# Work (codebook entries, or pruned entries x dimensions) per thread below which a call's rows
# are not split: a team start costs about 10 us, a row of 16384 entries about 20 us.
MIN_WORK = 1 << 15


def threads_for(rows: int, work_per_row: int) -> int:
    """Threads for a call over `rows` rows: torch's intra-op thread count where the kernel runs
    on torch's OpenMP team (`utils.native.set_openmp_team`), at most one per MIN_WORK of work
    and per 2 rows; 1 without a team. The results do not depend on it (rows never interact)."""
    if not _state["lib"].ardistill_team:
        return 1
    return max(1, min(torch.get_num_threads(), rows * work_per_row // MIN_WORK, rows // 2))


def available() -> bool:
    """Whether the compiled kernel can run here (built or loaded on the first call; False
    with `ARDISTILL_NATIVE=0`)."""
    return _LIB.available()


def reset() -> None:
    """Forget the loaded kernel (the next `available()` builds or loads it again)."""
    _LIB.reset()


def pack_codebook(CaugT: Tensor) -> Tensor | None:
    """[C, |c|^2]^T (k1, V) float32 -> the kernel's layout (V / 8, k1, 8) contiguous, or None
    where the kernel does not apply (not float32 on the CPU, V not a multiple of 8, more than
    64 dimensions, or no kernel here)."""
    k1, V = CaugT.shape
    if (CaugT.device.type != "cpu" or CaugT.dtype != torch.float32 or V % 8 or k1 > 65
            or not available()):
        return None
    return CaugT.reshape(k1, V // 8, 8).permute(1, 0, 2).contiguous()


def why_not(CaugT: Tensor) -> str:
    """Why `pack_codebook` returns None for this codebook ("" when it does not)."""
    k1, V = CaugT.shape
    if CaugT.device.type != "cpu" or CaugT.dtype != torch.float32:
        return f"needs float32 on the CPU, got {CaugT.dtype} on {CaugT.device}"
    if V % 8 or k1 > 65:
        return f"needs V a multiple of 8 and d <= 64, got V {V}, d {k1 - 1}"
    return _LIB.why


def augment(y: Tensor, rho: Tensor) -> Tensor:
    """`kernels.augment` in float32, contiguous: the kernel's yaug."""
    return K.augment(y, rho, torch.float32).contiguous()


def _check(status: int) -> None:
    if status == -2:
        raise MemoryError("posterior kernel: out of memory")
    if status != 0:
        raise ValueError(f"posterior kernel: unsupported sizes (status {status})")


def posterior_sums(yaug: Tensor, logp: Tensor, rows: Tensor, packed: Tensor, thr: float
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Pass 1 for rows `rows` (n,) int64 of logp (B, V) float32 (rows contiguous) at yaug
    (n, k1) (`augment`): the denoiser D (n, k1 - 1) float64; mz (n, 2) float32, each row's
    logit maximum m and Z = sum_j e^(E_j - m) (its largest weight is 1 / Z); and lb (n,)
    float32, a lower bound on its count of weights above thr (0 < thr < 1)."""
    n, k1 = yaug.shape
    V = logp.shape[1]
    rows = rows.contiguous()
    D = torch.empty(n, k1 - 1, dtype=torch.float64)
    mz = torch.empty(n, 2, dtype=torch.float32)
    lb = torch.empty(n, dtype=torch.float32)
    if n:
        _check(_state["lib"].ard_posterior_sums(threads_for(n, V), n, V, k1, yaug.data_ptr(),
                                                logp.data_ptr(),
                                                logp.stride(0), rows.data_ptr(),
                                                packed.data_ptr(), float(thr), D.data_ptr(),
                                                mz.data_ptr(), lb.data_ptr()))
    return D, mz, lb


def count_above(x: Tensor, rows: Tensor, cut: float) -> Tensor:
    """The number (n,) float32 of entries > cut in rows `rows` (n,) of x (B, V) float32 (rows
    contiguous, V a multiple of 8)."""
    rows = rows.contiguous()
    cnt = torch.empty(rows.numel(), dtype=torch.float32)
    if rows.numel():
        _state["lib"].ard_count_above(rows.numel(), x.shape[1], x.data_ptr(), x.stride(0),
                                      rows.data_ptr(), float(cut), cnt.data_ptr())
    return cnt


def log(x: Tensor, out: Tensor | None = None) -> Tensor:
    """log of a float32 CPU tensor >= 0 (zero and subnormal entries: -inf, as the solver's
    flush-to-zero mode reads them). `torch.log` takes a slow path for zeros on some CPUs
    (14 ns per zero entry on the EPYC, half the entries of a top-k row); this one does not.
    out: a contiguous float32 tensor of x's size to write into (reused memory: the page faults
    of a fresh 16 MB tensor cost as much as the logs)."""
    x = x.contiguous()
    if out is None:
        out = torch.empty_like(x)
    elif out.shape != x.shape or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError("out must be a contiguous float32 tensor of the input's shape")
    if x.numel():
        groups = -(-x.numel() // 4096)  # the kernel's parts: groups of 4096 floats
        _state["lib"].ard_log(threads_for(groups, 4096), x.numel(), x.data_ptr(),
                              out.data_ptr())
    return out


def posterior_prune(yaug: Tensor, logp: Tensor, rows: Tensor, packed: Tensor, mz: Tensor,
                    thr: float, M: int) -> tuple[Tensor, Tensor]:
    """The pruning pass for rows that may prune (in one pass over the logits: the count, and
    the entries themselves): cnt (n,) float32, the count of entries with weight > thr (w_j >
    thr <=> E_j > m + log(thr Z), with `posterior_sums`' mz; where the count exceeds M, a
    lower bound > M: the pass stops there), and idx
    (n, M) int64, where cnt <= M those entries' indices ascending, then -1 (as
    `solver.entries_above` of the weights)."""
    n, k1 = yaug.shape
    V = logp.shape[1]
    rows, mz = rows.contiguous(), mz.contiguous()
    cnt = torch.empty(n, dtype=torch.float32)
    idx = torch.empty(n, M, dtype=torch.int64)
    if n:
        _check(_state["lib"].ard_posterior_prune(threads_for(n, V), n, V, k1, yaug.data_ptr(),
                                                 logp.data_ptr(),
                                                 logp.stride(0), rows.data_ptr(),
                                                 packed.data_ptr(), mz.data_ptr(), float(thr),
                                                 M, cnt.data_ptr(), idx.data_ptr()))
    return cnt, idx


def _pruned_args(rows: Tensor, y: Tensor, rho: Tensor, C64: Tensor, idx: Tensor, lps: Tensor
                 ) -> tuple:
    B, M = lps.shape
    V, d = C64.shape
    if not (C64.dtype == lps.dtype == y.dtype == rho.dtype == torch.float64
            and idx.dtype == torch.int64 and idx.shape == (B, M)
            and C64.is_contiguous() and lps.is_contiguous() and idx.is_contiguous()):
        raise ValueError("pruned kernels need float64 C64 (V, d) and lps (B, M), int64 idx "
                         "(B, M), contiguous")
    rows = rows.contiguous()
    if rows.numel() and not 0 <= int(rows.min()) <= int(rows.max()) < B:
        raise ValueError(f"row ids must lie in [0, {B})")
    if idx.numel() and not 0 <= int(idx.min()) <= int(idx.max()) < V:
        raise ValueError(f"entry indices must lie in [0, {V})")
    return rows, y.contiguous(), rho.contiguous(), M, d


def pruned_denoiser(rows: Tensor, y: Tensor, rho: Tensor, C64: Tensor, idx: Tensor,
                    lps: Tensor) -> tuple[Tensor, Tensor]:
    """`kernels.pruned_denoiser(y, C64[idx[rows]], lps[rows], rho)` in C (float64, one row at a
    time, the codebook rows read in place): D (n, d) and the top-2 gap (n,). rows (n,) int64
    into idx (B, M) (entries of C64 (V, d)) and lps (B, M) (-inf: padding, skipped); y (n, d)
    and rho (n,) per row of the call."""
    rows, y, rho, M, d = _pruned_args(rows, y, rho, C64, idx, lps)
    n = rows.numel()
    D = torch.empty(n, d, dtype=torch.float64)
    gap = torch.empty(n, dtype=torch.float64)
    if n:
        _check(_state["lib"].ard_pruned_denoiser(threads_for(n, M * d), n, M, d,
                                                 rows.data_ptr(), y.data_ptr(), rho.data_ptr(),
                                                 C64.data_ptr(), idx.data_ptr(),
                                                 lps.data_ptr(), D.data_ptr(), gap.data_ptr()))
    return D, gap


def collapse_margin(rows: Tensor, y: Tensor, rho: Tensor, C64: Tensor, idx: Tensor,
                    lps: Tensor) -> tuple[Tensor, Tensor]:
    """`kernels.collapse_margin(y, C64[idx[rows]], lps[rows], rho)` in C (float64): the winner
    k (n,) int64 (index into M) and the smallest future log-weight gap (n,). Shapes as
    `pruned_denoiser`."""
    rows, y, rho, M, d = _pruned_args(rows, y, rho, C64, idx, lps)
    n = rows.numel()
    k = torch.empty(n, dtype=torch.int64)
    margin = torch.empty(n, dtype=torch.float64)
    if n:
        _check(_state["lib"].ard_collapse_margin(threads_for(n, M * d), n, M, d,
                                                 rows.data_ptr(), y.data_ptr(), rho.data_ptr(),
                                                 C64.data_ptr(), idx.data_ptr(),
                                                 lps.data_ptr(), k.data_ptr(),
                                                 margin.data_ptr()))
    return k, margin


def flow_step(ch, active: Tensor, n: int, slots: Tensor, k: int, new_slot: int, pred: Tensor,
              corr: Tensor, rho1: float, check_prune: bool) -> int:
    """One solver step of the `n` active rows `active[:n]` of chunk `ch` (`solver._Chunk`)
    from grid node ch.n to ch.n + 1 in C (`ard_flow_step`): predictor, evaluation, corrector,
    history slot `new_slot` (slots[:k]: the slots of D at nodes n, n - 1, ...). Returns how
    many rows got pruning candidates (ch.cand / ch.cand_ok)."""
    fm = ch.fm
    B, d = ch.y.shape
    V = ch.logp.shape[1]
    got = _state["lib"].ard_flow_step(
        threads_for(n, V), threads_for(n, fm.M * d), n, active.data_ptr(), B, d, V, fm.M,
        ch.y.data_ptr(), ch.H.data_ptr(), slots.data_ptr(), k, new_slot, pred.data_ptr(),
        corr.data_ptr(), rho1, int(check_prune), 0.5 / fm.M, ch.logp.data_ptr(),
        ch.logp.stride(0), fm.packed.data_ptr(), fm.prune_threshold, ch.pruned.data_ptr(),
        fm.C64.data_ptr(), ch.idx.data_ptr(), ch.lps.data_ptr(), ch.gap.data_ptr(),
        ch.full_evals.data_ptr(),
        ch.pruned_evals.data_ptr(), ch.cand.data_ptr(), ch.cand_ok.data_ptr())
    if got < 0:
        _check(got)
    return got


def flow_decide(ch, active: Tensor, n: int, rho: float, gap_min: float) -> int:
    """The collapse certificate for the active rows `active[:n]` of chunk `ch` at rho (C,
    `ard_flow_decide`): decided rows get their token and rho_end; `active` is compacted in
    place to the others, whose count is returned."""
    fm = ch.fm
    d = ch.y.shape[1]
    left = _state["lib"].ard_flow_decide(
        threads_for(n, fm.M * d), active.data_ptr(), n, d, fm.M, ch.y.data_ptr(), rho,
        fm.tv.scale, ch.pruned.data_ptr(), ch.gap.data_ptr(), gap_min,
        fm.cfg.certify_margin, fm.C64.data_ptr(), ch.lps.data_ptr(), ch.idx.data_ptr(),
        ch.tokens.data_ptr(), ch.rho_end.data_ptr())
    if left < 0:
        _check(left)
    return left
