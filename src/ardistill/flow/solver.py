"""The noise -> token map: a multistep ODE solver specialised to Dirac mixtures (method.md §2).

It integrates `dy/drho = D(y, rho)`, `y(0) = eps` (`ardistill.flow.posterior`) in the time
variable of `ardistill.flow.steps` with an Adams predictor-corrector. What makes it fast (each
choice measured, docs/flow.md):

1. Steps. `num_steps` steps of equal width in u cover rho * s in [0, `rho_split`]; after that
   steps `tail_du` wide run until the row is decided. Adams predictor of order 4 plus corrector
   (`ardistill.flow.steps`): one denoiser evaluation per step.
2. Pruning. A row's posterior over the whole codebook is evaluated only until at most
   `prune_size` entries carry weight above `prune_mass / V`; then the row keeps those entries
   (lost mass < prune_mass) and later steps cost `prune_size` instead of V. Rows whose support
   is that small (one-hot, top-k <= prune_size) never touch the full codebook.
3. Decision. A pruned row stops as soon as its posterior has provably collapsed
   (`kernels.collapse_margin` >= `certify_margin` nats): the analytic final step.

With the compiled kernel (`flow.native`) each step and decision runs in C (`native_loop`),
with the same floats as the Python loop here.

Determinism: rows never interact and every kernel runs on blocks of exactly `block_rows` rows
(the compiled kernel of `flow.native`, the default on CPUs with a C compiler, on any number
of rows: it is row-invariant by construction), so a row's result does not depend on the batch
around it, the chunking or the row order. Results are reproducible for a fixed device, dtype,
thread count and full-evaluation kernel (compiled or PyTorch: the two differ by float32
rounding, which moves a token only at a near-tie; tests/flow/test_native.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

import ardistill.flow.kernels as K
import ardistill.flow.native as native
from ardistill.flow.posterior import check_codebook, check_flow_inputs, log_probs
from ardistill.flow.steps import Grid, TimeVariable

# Main-grid steps when num_steps is None: the cheapest count that keeps >= 99.9% token
# agreement with the float64 reference in every benchmark setting (docs/flow.md).
DEFAULT_NUM_STEPS = 10
# Nats below the certificate margin at which a row's top-2 gap still triggers the certificate
# check (the gap is measured at the predicted point, the check at the corrected one).
_GAP_SLACK = 5.0


@dataclass(frozen=True)
class FlowSolverConfig:
    """Knobs of the flow solver. Defaults are the measured choice (docs/flow.md).

    num_steps: steps over rho * s in [0, rho_split] (equal in u), then steps `tail_du` wide.
    order: Adams predictor order (the corrector adds one).
    knee: the time variable's knee (units of 1/s), `ardistill.flow.steps`.
    rho_max: hard stop (units of 1/s); undecided rows then take their posterior argmax.
    prune_size, prune_mass, prune_from: pruning rule (2. above); checked from rho * s >= prune_from.
    certify_margin: log-weight margin that decides a row (3. above).
    dtype: precision of the full-codebook evaluations (state, history and pruned steps: float64).
    block_rows: rows per kernel call (fixed per codebook: results must not depend on the batch
        size); None = `auto_block_rows(V)`: 32, more for small codebooks (fewer Python-level
        kernel calls where each is tiny; docs/flow.md, Speed).
    max_rows: rows per chunk (memory: about max_rows * V * 10 bytes in float32).
    """

    num_steps: int = DEFAULT_NUM_STEPS
    order: int = 4
    knee: float = 2.0
    rho_split: float = 4.0
    tail_du: float = 0.1
    rho_max: float = 1e4
    prune_size: int = 64
    prune_mass: float = 1e-6
    prune_from: float = 1.0
    certify_margin: float = 20.0
    dtype: torch.dtype = torch.float32
    block_rows: int | None = None
    max_rows: int = 2048

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 1 <= self.order <= 4:
            raise ValueError(f"order must be in 1..4, got {self.order}")
        if (self.block_rows or 1) < 1 or self.max_rows % (self.block_rows or 32):
            raise ValueError("max_rows must be a multiple of block_rows (of 32 when it is None)")
        positive = ("knee", "rho_split", "tail_du", "prune_mass")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.rho_max <= self.rho_split or self.prune_size < 1:
            raise ValueError("need rho_max > rho_split and prune_size >= 1")


@dataclass
class FlowResult:
    """Per row (leading shape of the input): tokens int64; full_evals / pruned_evals int32
    denoiser evaluations over the whole codebook / over the pruned entries; rho_end / rho_prune
    float64, rho * s where the row was decided / left the full codebook."""

    tokens: Tensor
    full_evals: Tensor
    pruned_evals: Tensor
    rho_end: Tensor
    rho_prune: Tensor


class _Chunk:
    """Solver state of up to `max_rows` rows (ids index the chunk); rows never interact."""

    def __init__(self, fm: FlowMap, noise: Tensor, probs: Tensor):
        self.fm, cfg = fm, fm.cfg
        B, d = noise.shape
        dev, M, f64 = noise.device, fm.M, torch.float64
        self.probs = probs
        # (B, V) compute dtype
        self.logp = (native.log(probs.to(cfg.dtype), out=fm.workspace(probs.shape))
                     if fm.packed is not None else log_probs(probs.to(cfg.dtype)))
        self.y = noise.to(f64).clone()
        self.n = 0  # grid steps taken; every undecided row is at grid node n
        self.hist: list[Tensor] = []  # D at the last `order` nodes, newest first, (B, d)
        self.pruned = torch.zeros(B, dtype=torch.bool, device=dev)
        self.idx = torch.zeros(B, M, dtype=torch.long, device=dev)
        # the pruned rows' codebook rows, gathered (PyTorch path); the compiled kernels read
        # C64[idx] in place
        self.Cs = (torch.zeros(B, M, d, dtype=f64, device=dev) if fm.packed is None
                   else None)
        self.lps = torch.zeros(B, M, dtype=f64, device=dev)
        self.cand = torch.zeros(B, M, dtype=torch.long, device=dev)  # prune candidates
        self.cand_ok = torch.zeros(B, dtype=torch.bool, device=dev)
        self.gap = torch.full((B,), float("inf"), dtype=f64, device=dev)  # top-2, last eval
        self.tokens = torch.full((B,), -1, dtype=torch.long, device=dev)
        self.full_evals = torch.zeros(B, dtype=torch.int32, device=dev)
        self.pruned_evals = torch.zeros(B, dtype=torch.int32, device=dev)
        self.rho_end = torch.zeros(B, dtype=f64, device=dev)
        self.rho_prune = torch.zeros(B, dtype=f64, device=dev)

    # -- pruning ---------------------------------------------------------------------------
    def _prune(self, rows: Tensor, idx: Tensor) -> None:
        """Restrict `rows` to the entries idx (n, M); -1 pads (an inert entry: log p = -inf)."""
        pad = idx < 0
        idx = idx.clamp(min=0)
        n, M = idx.shape
        self.idx[rows] = idx
        # index_select / take: the same elements as advanced indexing, several times faster
        if self.Cs is not None:
            self.Cs[rows] = self.fm.C64.index_select(0, idx.view(-1)).view(n, M, -1)
        p = self.probs.take(rows.unsqueeze(1) * self.probs.shape[1] + idx)
        self.lps[rows] = log_probs(p.double()).masked_fill(pad, -math.inf)
        self.pruned[rows] = True
        self.gap[rows] = float("inf")  # unknown: check the certificate at the next decision
        self.rho_prune[rows] = self.rho(self.n) * self.fm.tv.scale

    def rho(self, n: int) -> float:
        return self.fm.rho_at(n)

    def _rho_rows(self, n: int, like: Tensor) -> Tensor:
        return torch.full((like.shape[0],), self.rho(n), dtype=torch.float64, device=like.device)

    def prune_at_start(self) -> None:
        """Rows whose prior already holds all but prune_mass in M entries (one-hot, small top-k,
        very peaked rows) are restricted to those entries before any full evaluation."""
        # Only rows whose largest entry is >= 0.5 / M can qualify (see `_evaluate_full`).
        rows = (self.probs.amax(-1) >= 0.5 / self.fm.M).nonzero().squeeze(1)
        if rows.numel() and self.fm.packed is not None:  # p > thr <=> log p > log thr
            cnt = native.count_above(self.logp, rows, math.log(self.fm.prune_threshold))
            rows = rows[cnt <= self.fm.M]
        elif rows.numel():
            rows = rows[_count_above(self.probs[rows], self.fm.prune_threshold) <= self.fm.M]
        if rows.numel():
            self._prune(rows, entries_above(self.logp[rows], math.log(self.fm.prune_threshold),
                                            self.fm.M))

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, rows: Tensor, y: Tensor, rho: Tensor) -> Tensor:
        """D (n, d) float64 at (y (n, d), rho (n,)) for `rows` (n,). Full rows whose posterior
        has concentrated there become prune candidates (`cand`, applied if the step is kept)."""
        D = torch.empty_like(y)
        pr = self.pruned[_rows_index(rows)]
        pos_f, pos_p = (~pr).nonzero().squeeze(1), pr.nonzero().squeeze(1)
        if pos_f.numel():
            D[pos_f] = self._evaluate_full(rows[pos_f], y[pos_f], rho[pos_f])
        if pos_p.numel():
            D[pos_p] = self._evaluate_pruned(rows[pos_p], y[pos_p], rho[pos_p])
        return D

    def _logp_rows(self, rows: Tensor, n: int) -> Tensor:
        r0 = int(rows[0])  # a contiguous block is a view: no (R, V) copy in the common case
        if n == rows.numel() and int(rows[-1]) - r0 == n - 1:
            return self.logp[r0 : r0 + n]
        return self.logp.index_select(0, rows)  # 5x faster than logp[rows] on the CPU

    def _evaluate_full(self, rows: Tensor, y: Tensor, rho: Tensor) -> Tensor:
        fm = self.fm
        if fm.packed is not None:
            return self._evaluate_full_native(rows, y, rho)
        out = torch.empty_like(y)
        pos = torch.arange(rows.numel(), device=rows.device)
        check = rho * fm.tv.scale >= fm.cfg.prune_from
        for ids, n in K.blocks(pos, fm.R):
            D, w = K.full_posterior(y[ids], rho[ids], self._logp_rows(rows[ids], n), fm.CaugT)
            out[ids[:n]] = D[:n]
            # At most M entries above prune_mass / V hold > 1 - prune_mass of the mass, so the
            # largest weight is > (1 - prune_mass) / M: a cheap exact filter before the count.
            peaked = check[ids[:n]] & (w[:n].amax(-1) >= 0.5 / fm.M)
            if bool(peaked.any()):
                cnt = _count_above(w[:n], fm.prune_threshold)
                ok = ((cnt <= fm.M) & peaked).nonzero().squeeze(1)
                if ok.numel():
                    r = rows[ids[:n]][ok]
                    self.cand[r] = entries_above(w[:n][ok], fm.prune_threshold, fm.M)
                    self.cand_ok[r] = True
        self.full_evals[_rows_index(rows)] += 1
        return out

    def _evaluate_full_native(self, rows: Tensor, y: Tensor, rho: Tensor) -> Tensor:
        """`_evaluate_full` through the compiled kernel (`flow.native`): every row in one call
        (the kernel is row-invariant for any number of rows); the count above the pruning
        threshold only for the rows whose largest weight passes the filter, the weights only
        for the rows that prune (groups of at most `fm.R * 8` rows)."""
        fm = self.fm
        yaug = native.augment(y, rho)
        D, mz, lb = native.posterior_sums(yaug, self.logp, rows, fm.packed, fm.prune_threshold)
        # the largest weight is 1 / Z: the same filter as the PyTorch path's amax; and rows
        # with more than M weights certainly above the threshold cannot prune
        peaked = ((rho * fm.tv.scale >= fm.cfg.prune_from)
                  & (mz[:, 1].reciprocal() >= 0.5 / fm.M) & (lb <= fm.M)).nonzero().squeeze(1)
        if peaked.numel():  # their count above the threshold and, where <= M, top-M entries
            cnt, idx = native.posterior_prune(yaug.index_select(0, peaked), self.logp,
                                              rows[peaked], fm.packed,
                                              mz.index_select(0, peaked), fm.prune_threshold,
                                              fm.M)
            ok = cnt <= fm.M
            if bool(ok.any()):
                r = rows[peaked[ok]]
                self.cand[r] = idx[ok]
                self.cand_ok[r] = True
        self.full_evals[_rows_index(rows)] += 1
        return D

    def _evaluate_pruned(self, rows: Tensor, y: Tensor, rho: Tensor) -> Tensor:
        if self.fm.packed is not None:  # the compiled kernels: every row in one call
            out, self.gap[rows] = native.pruned_denoiser(rows, y, rho, self.fm.C64, self.idx,
                                                         self.lps)
            self.pruned_evals[_rows_index(rows)] += 1
            return out
        out = torch.empty_like(y)
        pos = torch.arange(rows.numel(), device=rows.device)
        for ids, n in self.fm.pruned_blocks(pos):
            r = rows[ids]
            D, gap = K.pruned_denoiser(y[ids], self.Cs.index_select(0, r),
                                       self.lps.index_select(0, r), rho[ids])
            out[ids[:n]], self.gap[r[:n]] = D[:n], gap[:n]
        self.pruned_evals[_rows_index(rows)] += 1
        return out

    # -- decisions ---------------------------------------------------------------------------
    def decide(self, rows: Tensor, force: bool = False) -> Tensor:
        """Record the tokens of pruned `rows` whose posterior has provably collapsed (with
        `force`: of all rows, by posterior argmax). Returns the rows still undecided."""
        fm = self.fm
        if force:
            full = rows[~self.pruned[rows]]
            for ids, n in K.blocks(full, fm.R):
                rho = self._rho_rows(self.n, ids)
                _, w = K.full_posterior(self.y[ids], rho, self.logp.index_select(0, ids),
                                        fm.CaugT)
                self._prune(ids[:n], w[:n].topk(fm.M, dim=-1).indices)
        done = torch.zeros_like(self.pruned)
        # The certificate needs every gap >= certify_margin; a row whose top-2 gap at the last
        # evaluation (the predicted point) was far below cannot pass it: skip the check.
        cand = self.pruned[rows] & (self.gap[rows] >= fm.cfg.certify_margin - _GAP_SLACK)
        check = rows[cand | force]
        # the compiled kernel: every row in one call; else blocks (`pruned_blocks`)
        parts = ([(check, check.numel())] if fm.packed is not None and check.numel()
                 else fm.pruned_blocks(check))
        for ids, n in parts:
            rho = self._rho_rows(self.n, ids)
            if fm.packed is not None:
                k, margin = native.collapse_margin(ids, self.y.index_select(0, ids), rho,
                                                   fm.C64, self.idx, self.lps)
            else:
                k, margin = K.collapse_margin(self.y.index_select(0, ids),
                                              self.Cs.index_select(0, ids),
                                              self.lps.index_select(0, ids), rho)
            ok = (margin >= fm.cfg.certify_margin)[:n] | force
            r = ids[:n][ok]
            self.tokens[r] = self.idx[r].gather(1, k[:n][ok].unsqueeze(1)).squeeze(1)
            self.rho_end[r] = rho[:n][ok] * fm.tv.scale
            done[r] = True
        return rows[~done[rows]]

    # -- stepping ----------------------------------------------------------------------------
    def step(self, rows: Tensor) -> None:
        """One predictor-corrector step of `rows` from grid node n to n + 1."""
        pred, corr = self.fm.grid.weights(self.n)
        at = _rows_index(rows)
        self.cand_ok[at] = False
        y0 = _take(self.y, at)
        yp = y0.clone()
        for b, Dh in zip(pred, self.hist):
            yp += b * _take(Dh, at)
        D1 = self.evaluate(rows, yp, self._rho_rows(self.n + 1, yp))
        yc = y0 + corr[0] * D1
        for b, Dh in zip(corr[1:], self.hist):
            yc += b * _take(Dh, at)
        self.y[at] = yc
        Dn = torch.zeros_like(self.y)
        Dn[at] = D1
        self.hist = [Dn] + self.hist[: self.fm.cfg.order - 1]
        self.n += 1
        newly = rows[self.cand_ok[rows] & ~self.pruned[rows]]
        if newly.numel():
            self._prune(newly, self.cand[newly])

    def run(self) -> None:
        """Integrate every row until its token is decided."""
        fm = self.fm
        rows = torch.arange(self.y.shape[0], device=self.y.device)
        self.prune_at_start()
        self.hist = [self.evaluate(rows, self.y, self._rho_rows(0, self.y))]
        active = self.decide(rows)
        u_max = fm.tv.u_at(fm.cfg.rho_max)
        if fm.packed is not None and fm.native_loop:
            self._run_native(active, u_max)
            return
        while active.numel():
            if fm.grid.u(self.n + 1) > u_max:
                self.decide(active, force=True)
                return
            self.step(active)
            active = self.decide(active)

    def _run_native(self, active: Tensor, u_max: float) -> None:
        """`run`'s loop with each step and decision in C (`native.flow_step`, `flow_decide`):
        the same floats as the loop above on the compiled kernel, about a hundred small
        PyTorch operations per step fewer. The history lives in slots of one tensor."""
        fm, order = self.fm, self.fm.cfg.order
        B, d = self.y.shape
        self.H = torch.empty(order + 1, B, d, dtype=torch.float64)
        self.H[0] = self.hist[0]
        slots = [0]
        active = active.clone()
        n = active.numel()
        gap_min = fm.cfg.certify_margin - _GAP_SLACK
        while n:
            if fm.grid.u(self.n + 1) > u_max:
                self.decide(active[:n], force=True)
                return
            pred, corr = fm.step_weights(self.n)
            new = min(set(range(order + 1)) - set(slots))
            rho1 = self.rho(self.n + 1)
            got = native.flow_step(self, active, n, torch.tensor(slots, dtype=torch.int32),
                                   len(slots), new, pred, corr, rho1,
                                   rho1 * fm.tv.scale >= fm.cfg.prune_from)
            slots = [new] + slots[: order - 1]
            self.n += 1
            if got:  # rows whose posterior concentrated on <= M entries: restrict them
                act = active[:n]
                newly = act[self.cand_ok.index_select(0, act)]
                self._prune(newly, self.cand.index_select(0, newly))
            n = native.flow_decide(self, active, n, rho1, gap_min)


def _rows_index(rows: Tensor) -> Tensor | slice:
    """An index for the ascending, distinct row ids `rows`: a slice when they are one
    contiguous range (a view, no gather: every row at the start, whole blocks later), else
    the ids themselves. Reads and writes through either touch the same elements."""
    n = rows.numel()
    if n and int(rows[-1]) - int(rows[0]) == n - 1:
        r0 = int(rows[0])
        return slice(r0, r0 + n)
    return rows


def _take(t: Tensor, at: Tensor | slice) -> Tensor:
    """t[at] along dim 0 (`_rows_index`): a view for a slice, index_select for ids (the same
    elements; several times faster than advanced indexing on the CPU)."""
    return t[at] if isinstance(at, slice) else t.index_select(0, at)


def entries_above(x: Tensor, cut: float, M: int) -> Tensor:
    """The entries of each row of x (n, V) that are > cut, at most M of them (the caller
    checked): their indices ascending, then -1 up to M entries, (n, M) int64. The compiled
    kernel's `posterior_prune` returns the same for the posterior weights."""
    vals, ind = x.topk(M, dim=-1)
    V = x.shape[-1]
    ind = torch.where(vals > cut, ind, V).sort(dim=-1).values
    return ind.masked_fill(ind == V, -1)


def _count_above(w: Tensor, thr: float) -> Tensor:
    """Entries of each row of w (R, V) that are > thr, as float (exact below 2^24 entries).

    sign(relu(w - thr)): 2x faster on CPU than (w > thr).sum(dtype=int32), which casts the
    bool mask (docs/flow.md, Speed). Exact: thr is a normal float, so w - thr > 0 iff
    w > thr, also with subnormals flushed to zero (`flush_denormals`)."""
    return (w - thr).clamp_(min=0).sign_().sum(-1)


def _flush_denormal_is_on() -> bool:
    # torch has no getter: with flush-to-zero / denormals-are-zero on, a subnormal product is 0
    return torch.tensor([1e-40], dtype=torch.float32).mul(1.0).item() == 0.0


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush subnormal floats to zero on the CPU while the solver runs (restored after).

    Posterior weights of far entries land in the subnormal range (< 1.2e-38), where x86 float
    arithmetic takes a slow path: the full-codebook softmax ran 2.5x slower on such rows
    (docs/flow.md, Speed). Weights that small change no float32 sum of the denoiser or any
    pruning decision (the threshold prune_mass / V is a normal float). The setting is per
    thread (the caller's; intra-op worker threads keep theirs), so results stay reproducible
    for a fixed thread count."""
    if not enabled or _flush_denormal_is_on() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def auto_block_rows(V: int, max_rows: int) -> int:
    """Rows per kernel call for a V-entry codebook: about 2^16 posterior entries per block,
    32 to 256 rows, a power of two dividing max_rows (a multiple of 32)."""
    R = 32
    while R < 256 and 2 * R * V <= 1 << 16 and max_rows % (2 * R) == 0:
        R *= 2
    return R


class FlowMap:
    """The flow map for one codebook, with the codebook-dependent constants computed once.

    `FlowMap(codebook, config)(noise, probs)` equals `map_noise_to_tokens` with that config;
    pair generation builds one and calls it at every AR step.
    codebook: (V, d) float, as DD sees it (LlamaGen rows L2-normalised, VAR raw).
    use_native: the full-codebook evaluations through the compiled kernel (`flow.native`):
    None where it applies (float32 on the CPU, V a multiple of 8, a kernel built here), False
    never, True always (ValueError where it does not apply).
    native_loop: with the compiled kernel, run the solver's steps and decisions in C too (the
    same floats as the Python loop, which False keeps: for tests and comparisons).
    """

    def __init__(self, codebook: Tensor, config: FlowSolverConfig | None = None, *,
                 use_native: bool | None = None, native_loop: bool = True):
        check_codebook(codebook)
        self.cfg = cfg = config or FlowSolverConfig()
        self.codebook = codebook
        V = codebook.shape[0]
        self.C64 = codebook.double().contiguous()
        Caug = torch.cat([self.C64, self.C64.pow(2).sum(-1, keepdim=True)], 1)
        self.CaugT = Caug.T.to(cfg.dtype).contiguous()  # (d + 1, V)
        self.M = min(cfg.prune_size, V)
        self.R = cfg.block_rows or auto_block_rows(V, cfg.max_rows)
        # the compiled full-codebook kernel's codebook (`flow.native`), None: the PyTorch path
        self.packed = native.pack_codebook(self.CaugT) if use_native is not False else None
        self._work = threading.local()
        if use_native and self.packed is None:
            raise ValueError("the compiled posterior kernel does not apply here "
                             f"({native.why_not(self.CaugT)})")
        self.prune_threshold = cfg.prune_mass / V
        scale = float(self.C64.pow(2).sum(-1).mean().sqrt())
        if scale == 0:
            raise ValueError("codebook is all zeros")
        self.tv = TimeVariable(cfg.knee, scale)
        self.grid = Grid(self.tv, cfg.num_steps, self.tv.u_at(cfg.rho_split), cfg.tail_du,
                         cfg.order)
        self.native_loop = native_loop
        self._rho: dict[int, float] = {}
        self._weights: dict[int, tuple[Tensor, Tensor]] = {}

    def rho_at(self, n: int) -> float:
        """rho at grid node n (float64; computed once per node)."""
        if n not in self._rho:
            self._rho[n] = float(self.tv.rho(torch.tensor(self.grid.u(n), dtype=torch.float64)))
        return self._rho[n]

    def step_weights(self, n: int) -> tuple[Tensor, Tensor]:
        """`grid.weights(n)` as float64 CPU tensors (predictor, corrector), for the C loop."""
        if n not in self._weights:
            pred, corr = self.grid.weights(n)
            self._weights[n] = (torch.tensor(pred, dtype=torch.float64),
                                torch.tensor(corr, dtype=torch.float64))
        return self._weights[n]

    def workspace(self, shape: torch.Size) -> Tensor:
        """A float32 CPU tensor of `shape` in memory this map keeps between calls (the chunk's
        log probabilities: a fresh one paid its page faults at every call). One per thread, so
        that threads sharing a map (the app serving requests) never share it; a thread solves
        one chunk at a time."""
        n = shape.numel()
        buf = getattr(self._work, "buf", None)
        if buf is None or buf.numel() < n:
            buf = self._work.buf = torch.empty(n, dtype=torch.float32)
        return buf[:n].view(shape)

    def pruned_blocks(self, rows: Tensor) -> list[tuple[Tensor, int]]:
        """Blocks for the pruned kernels: unpadded on the CPU (row-invariant there for any
        block size, `ardistill.flow.kernels`), padded to R elsewhere."""
        return K.blocks(rows, self.R, pad=rows.device.type != "cpu")

    def solve(self, noise: Tensor, probs: Tensor) -> FlowResult:
        """noise: (..., d) float; probs: (..., V) float -> FlowResult with (...) fields."""
        return solve_in_chunks(noise, probs, self.codebook, self.cfg.max_rows, self._run_chunk)

    def _run_chunk(self, noise: Tensor, probs: Tensor) -> tuple[Tensor, ...]:
        ch = _Chunk(self, noise, probs)
        ch.run()
        return ch.tokens, ch.full_evals, ch.pruned_evals, ch.rho_end, ch.rho_prune

    def __call__(self, noise: Tensor, probs: Tensor) -> Tensor:
        """(..., d), (..., V) -> (...) int64 token ids."""
        return self.solve(noise, probs).tokens


def solve_in_chunks(noise: Tensor, probs: Tensor, codebook: Tensor, rows: int,
                    run: Callable[[Tensor, Tensor], tuple[Tensor, ...]]) -> FlowResult:
    """The frame of a solver's `solve`: check the inputs, flatten their leading shape, call
    `run(noise (n, d), probs (n, V))` -> the five per-row fields of `FlowResult` on chunks of at
    most `rows` rows with subnormals flushed on the CPU, and assemble the result."""
    check_flow_inputs(noise, probs, codebook)
    lead = noise.shape[:-1]
    V, d = codebook.shape
    x, p = noise.reshape(-1, d), probs.reshape(-1, V)
    parts = []
    with flush_denormals(noise.device.type == "cpu"):
        for r0 in range(0, x.shape[0], rows):
            parts.append(run(x[r0 : r0 + rows], p[r0 : r0 + rows]))
    dtypes = (torch.long, torch.int32, torch.int32, torch.float64, torch.float64)
    fields = [
        torch.cat([q[i] for q in parts]).reshape(lead)
        if parts
        else torch.zeros(lead, dtype=dt, device=noise.device)
        for i, dt in enumerate(dtypes)
    ]
    return FlowResult(*fields)


def solve_flow(
    noise: Tensor, probs: Tensor, codebook: Tensor, config: FlowSolverConfig | None = None
) -> FlowResult:
    """`map_noise_to_tokens` with an explicit config and per-row cost statistics."""
    return FlowMap(codebook, config).solve(noise, probs)


def map_noise_to_tokens(
    noise: Tensor,
    probs: Tensor,
    codebook: Tensor,
    *,
    num_steps: int | None = None,
) -> Tensor:
    """The AR flow map (method.md §2): Gaussian noise -> token ids, deterministic, pushing
    N(0, I_d) forward to `probs`.

    noise: (..., d) float, N(0, I) draws; probs: (..., V) float, rows sum to 1 (zeros allowed:
    those tokens are never returned); codebook: (V, d) float, as DD sees it (LlamaGen rows
    L2-normalised, VAR raw). num_steps: solver steps up to rho * s = 4 (then the tail until
    each row is decided); None = `DEFAULT_NUM_STEPS`, the cheapest count with >= 99.9% token
    agreement with the float64 reference in every benchmark setting (docs/flow.md).
    Returns (...) int64 token ids on the device of the inputs. Raises ValueError on
    inconsistent input (shapes, negative or non-normalised probs, NaN/inf).
    """
    cfg = FlowSolverConfig() if num_steps is None else FlowSolverConfig(num_steps=num_steps)
    return FlowMap(codebook, cfg)(noise, probs)
