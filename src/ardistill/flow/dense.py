"""The flow map for small codebooks: every row over the whole codebook at every step.

`FlowMap` (`ardistill.flow.solver`) is built for large codebooks: a row leaves the full
codebook as soon as its posterior concentrates on a few entries, and pays per step for that
bookkeeping (splitting rows into full and pruned ones, candidate checks, gathers). At a small
codebook (V up to `DENSE_MAX_VOCAB`) a full evaluation costs about what the bookkeeping does,
and at batch 1 the solver's time was Python and dispatch overhead: about 1 ms per solver step
for the 130 positions of mnist-var (docs/flow.md, "The dense choice solver"). `DenseFlowMap`
solves the same ODE with the same grid and Adams predictor-corrector (`ardistill.flow.steps`)
and decides a row by the same collapse certificate (`kernels.collapse_margin`, here over the
whole codebook: no entry is ever dropped), in a few tensor operations per step:

- the denoiser as `FlowMap`'s full evaluations compute it: logits
  `log p + rho <y, c> - rho^2 |c|^2 / 2` in one GEMM in the compute dtype (float32), softmax,
  `w C`; state and history in float64;
- the certificate in float64 from the same inner products: with `G = C C^T` and the exact
  pairwise distances `|c_k - c_j|^2` (precomputed), a row's slopes `(y - rho c_j).(c_k - c_j)`
  are `<y, c_k> - <y, c_j> - rho (G_kj - |c_j|^2)`. It is computed for the rows whose largest
  posterior weight at the step's evaluation is at least `CHECK_WEIGHT` (a row that would pass
  earlier passes at a later check with the same token: once certified, its posterior stays on
  that entry; skipping only costs steps);
- decided rows ride along until at most half of the state is undecided, then the state is
  compacted.

Row invariance: both GEMMs run as `bmm` over blocks of exactly `BLOCK_ROWS` rows (the last
padded), so a row's floats do not depend on the batch around it (one `mm` over all rows does:
measured with float64 MKL from 4 rows on). Everything else is elementwise or reduces over a
row's own entries.

Used by the DD token choice (`core.choosers.choice_map`) for small codebooks where
`FlowMap`'s compiled step loop does not apply (CUDA, no C compiler): with it, `FlowMap` is
faster at every batch since session 11 (docs/flow.md). Pair generation keeps `FlowMap`
(datasets record its exact configuration).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ardistill.flow.posterior import check_codebook, log_probs
from ardistill.flow.solver import FlowResult, FlowSolverConfig, solve_in_chunks
from ardistill.flow.steps import Grid, TimeVariable

# Codebooks up to this size take the dense solver in the DD choice where FlowMap's compiled
# step loop does not apply: there the full posterior costs about as much as a pruned row's
# bookkeeping in PyTorch (docs/flow.md).
DENSE_MAX_VOCAB = 1024
# Rows per GEMM block (fixed: a row's result must not depend on the batch).
BLOCK_ROWS = 32
# The certificate runs on the rows whose largest posterior weight at the step's evaluation is
# at least this (module docstring). On the shipped students' inputs it returned the same tokens
# as checking every row whose top-2 gap is within a nat of the margin, at the cost of a
# top-k (docs/flow.md).
CHECK_WEIGHT = 0.9


class DenseFlowMap:
    """The flow map over the whole codebook at every step (module docstring).

    config: the grid (num_steps, order, knee, rho_split, tail_du), the hard stop rho_max and
    certify_margin of a `FlowSolverConfig`; its pruning, dtype and block fields do not apply
    (float64, nothing pruned). `DenseFlowMap(cb, cfg)(noise, probs)` returns the tokens;
    `solve` also the per-row statistics of `FlowResult` (pruned_evals and rho_prune zero).
    """

    def __init__(self, codebook: Tensor, config: FlowSolverConfig | None = None):
        check_codebook(codebook)
        self.cfg = cfg = config or FlowSolverConfig()
        self.codebook = codebook
        V, d = codebook.shape
        C = codebook.double().contiguous()
        self.CT = C.T.contiguous()
        self.n2 = n2 = C.pow(2).sum(-1)  # (V,)
        # the certificate's per-winner rows (V, V), indexed [k, j]: G_kj - |c_j|^2 for the
        # slopes; 1 / (2 |c_k - c_j|^2) for the dips, and +inf where c_j == c_k (ignored)
        self.Gm = C @ C.T - n2
        dist2 = torch.cat([(C[i : i + 64, None] - C[None]).pow(2).sum(-1)
                           for i in range(0, V, 64)])  # exact: 0 only for equal entries
        self.inv2d = torch.where(dist2 > 0, 0.5 / dist2.clamp_min(1e-300), 0.0)
        self.same = torch.where(dist2 > 0, 0.0, math.inf)
        # the posterior's GEMM operands in the compute dtype: [C, |c|^2]^T and C
        self.CaugT = torch.cat([C, n2[:, None]], 1).T.to(cfg.dtype).contiguous()
        self.Cc = C.to(cfg.dtype)
        scale = float(n2.mean().sqrt())
        if scale == 0:
            raise ValueError("codebook is all zeros")
        self.tv = TimeVariable(cfg.knee, scale)
        self.grid = Grid(self.tv, cfg.num_steps, self.tv.u_at(cfg.rho_split), cfg.tail_du,
                         cfg.order)
        # rows per chunk: about 2^21 posterior entries, a multiple of BLOCK_ROWS
        self.chunk_rows = max(BLOCK_ROWS, (1 << 21) // V // BLOCK_ROWS * BLOCK_ROWS)

    # -- kernels -------------------------------------------------------------------------------
    @staticmethod
    def _mm(a: Tensor, b: Tensor) -> Tensor:
        """a (n, k) @ b (k, m), n a multiple of BLOCK_ROWS, as a bmm over blocks of BLOCK_ROWS
        rows (row-invariant, see the module docstring)."""
        nb = a.shape[0] // BLOCK_ROWS
        out = torch.bmm(a.view(nb, BLOCK_ROWS, a.shape[1]), b.expand(nb, *b.shape))
        return out.view(a.shape[0], b.shape[1])

    def _denoise(self, y: Tensor, logp: Tensor, rho: float) -> tuple[Tensor, Tensor]:
        """D (n, d) float64 at (y (n, d) float64, rho) and the largest posterior weight (n,)
        there. logp: (n, V) in the compute dtype. The logits in one GEMM:
        [rho y, -rho^2 / 2] @ [C, |c|^2]^T + log p."""
        yaug = torch.cat([rho * y, y.new_full((y.shape[0], 1), -0.5 * rho * rho)], 1)
        E = self._mm(yaug.to(self.CaugT.dtype), self.CaugT).add_(logp)
        w = torch.softmax(E, dim=-1)
        return self._mm(w, self.Cc).double(), w.amax(-1)

    def _certify(self, y: Tensor, logp: Tensor, rho: float) -> tuple[Tensor, Tensor]:
        """The posterior argmax k (n,) and `kernels.collapse_margin`'s smallest future gap
        (n,) over the whole codebook, at state y (n, d) float64 and rho (logp: (n, V), upcast
        to float64; n a multiple of BLOCK_ROWS). Entries with p_j = 0 have an infinite gap."""
        yc = self._mm(y, self.CT)
        E = torch.add(logp.double(), yc, alpha=rho).sub_(self.n2, alpha=0.5 * rho * rho)
        k = E.argmax(-1)
        # slope_j = <y, c_k> - <y, c_j> - rho (G_kj - |c_j|^2); a dip only where it is < 0
        dip = torch.sub(yc.gather(1, k[:, None]) - yc, self.Gm.index_select(0, k), alpha=rho)
        dip = dip.clamp_(max=0).square_().mul_(self.inv2d.index_select(0, k))
        Ek = E.gather(1, k[:, None])
        gmin = E.neg_().add_(Ek).sub_(dip).add_(self.same.index_select(0, k))  # E_k - E_j - dip
        return k, gmin.amin(-1)

    # -- solving ------------------------------------------------------------------------------
    def _run(self, noise: Tensor, probs: Tensor) -> tuple[Tensor, ...]:
        """One chunk: tokens (B,), evaluations (B,) int32, no pruned evaluations, rho * s at the
        decision (B,), no pruning point (`FlowResult`'s fields).

        The state holds P rows (a multiple of BLOCK_ROWS; padded by repeating the last row):
        `ids` their chunk rows, `alive` the undecided ones. Decided rows ride along until at
        most half of the state is alive, then the state is compacted."""
        cfg, grid, tv = self.cfg, self.grid, self.tv
        B, dev = noise.shape[0], noise.device
        tokens = torch.full((B,), -1, dtype=torch.long, device=dev)
        evals = torch.zeros(B, dtype=torch.int32, device=dev)
        rho_end = torch.zeros(B, dtype=torch.float64, device=dev)
        P = -(-B // BLOCK_ROWS) * BLOCK_ROWS
        ids = torch.cat([torch.arange(B, device=dev),
                         torch.full((P - B,), B - 1, dtype=torch.long, device=dev)])
        alive = torch.arange(P, device=dev) < B
        left = B
        logp = log_probs(probs.to(cfg.dtype)).index_select(0, ids)
        y = noise.double().index_select(0, ids)
        D0, top = self._denoise(y, logp, 0.0)
        hist = [D0]  # D at the last `order` nodes, newest first
        n = 0

        def rho_of(i: int) -> float:
            return float(tv.rho(torch.tensor(grid.u(i), dtype=torch.float64)))

        def decide(top: Tensor | None, rho: float) -> None:
            """Certify the alive rows whose largest weight at the last evaluation `top` is at
            least CHECK_WEIGHT (top None: decide every alive row by its posterior argmax)."""
            nonlocal ids, alive, left, logp, y, hist
            cand = alive if top is None else alive & (top >= CHECK_WEIGHT)
            cand = cand.nonzero().squeeze(1)
            nc = cand.numel()
            if not nc:
                return
            pad = -(-nc // BLOCK_ROWS) * BLOCK_ROWS - nc
            at = torch.cat([cand, cand[-1:].expand(pad)]) if pad else cand
            k, margin = self._certify(y.index_select(0, at), logp.index_select(0, at), rho)
            k, margin = k[:nc], margin[:nc]
            ok = None if top is None else margin >= cfg.certify_margin
            if ok is not None:
                cand, k = cand[ok], k[ok]
            if not cand.numel():
                return
            done = ids.index_select(0, cand)
            tokens[done], rho_end[done], evals[done] = k, rho * tv.scale, n + 1
            alive[cand] = False
            left -= cand.numel()
            if left and 2 * left <= alive.shape[0] - BLOCK_ROWS:  # compact
                keep = alive.nonzero().squeeze(1)
                Pn = -(-left // BLOCK_ROWS) * BLOCK_ROWS
                keep = torch.cat([keep, keep[-1:].expand(Pn - left)])
                ids, logp, y = (t.index_select(0, keep) for t in (ids, logp, y))
                hist = [h.index_select(0, keep) for h in hist]
                alive = torch.arange(Pn, device=dev) < left

        decide(top, 0.0)
        u_max = tv.u_at(cfg.rho_max)
        while left:
            if grid.u(n + 1) > u_max:  # hard stop: the posterior argmax
                decide(None, rho_of(n))
                break
            pred, corr = grid.weights(n)
            rho1 = rho_of(n + 1)
            yp = y.clone()
            for b, Dh in zip(pred, hist):
                yp.add_(Dh, alpha=b)
            D1, top = self._denoise(yp, logp, rho1)
            y = torch.add(y, D1, alpha=corr[0])
            for b, Dh in zip(corr[1:], hist):
                y.add_(Dh, alpha=b)
            hist = [D1] + hist[: cfg.order - 1]
            n += 1
            decide(top, rho1)
        return tokens, evals, torch.zeros_like(evals), rho_end, torch.zeros_like(rho_end)

    def solve(self, noise: Tensor, probs: Tensor) -> FlowResult:
        """noise: (..., d) float; probs: (..., V) float -> FlowResult with (...) fields."""
        return solve_in_chunks(noise, probs, self.codebook, self.chunk_rows, self._run)

    def __call__(self, noise: Tensor, probs: Tensor) -> Tensor:
        """(..., d), (..., V) -> (...) int64 token ids."""
        return self.solve(noise, probs).tokens
