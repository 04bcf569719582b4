"""A float64 reference for the flow map, and the synthetic problems it is measured on.

The reference integrates the same ODE as `ardistill.flow.solver` (`dy/drho = D(y, rho)`, see
`ardistill.flow.posterior`) with a different method: the adaptive Dormand-Prince 5(4) pair with
per-row step control (rtol = atol = 1e-8 by default), in float64 throughout. It keeps the whole
codebook until a row's posterior holds all but 1e-12 of its mass in 256 entries, and stops a row
only when the collapse certificate (`kernels.collapse_margin`) exceeds 40 nats. It is slow (about
200 to 400 denoiser evaluations per row) and meant for tests and the accuracy table.

`make_flow_problem` draws the benchmark settings of docs/flow.md: LlamaGen-like (V = 16384,
d = 8, unit-norm codebook, top-k 8000) and VAR-like (V = 4096, d = 32, log-normal row norms,
top-k 900), each with flat (logit std 1) or peaked (logit std 4.5) distributions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ardistill.flow.kernels import collapse_margin
from ardistill.flow.posterior import check_flow_inputs, log_probs


@dataclass(frozen=True)
class FlowSetting:
    """A synthetic benchmark problem shaped like one teacher's token distributions.

    Codebook rows are Gaussian directions; `normalize` makes them unit-norm (LlamaGen), else
    their norms are log-normal with median 1 and log-std `norm_spread` (VAR's raw codebook).
    Each row's distribution is softmax(logit_std * N(0, 1) logits) restricted to its top_k.
    """

    name: str
    vocab_size: int
    dim: int
    top_k: int
    normalize: bool
    norm_spread: float = 0.0


FLOW_SETTINGS: dict[str, FlowSetting] = {
    "llamagen": FlowSetting("llamagen", 16384, 8, 8000, normalize=True),
    "var": FlowSetting("var", 4096, 32, 900, normalize=False, norm_spread=0.3),
}
# Distributions, as the std of the Gaussian logits before top-k: flat has about 8.5 nats of
# entropy (LlamaGen-like, 8000 kept), peaked about 1 to 2 nats.
LOGIT_STD: dict[str, float] = {"flat": 1.0, "peaked": 4.5}


def make_flow_problem(
    setting: FlowSetting | str,
    n: int,
    logit_std: float,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw (noise (n, d), probs (n, V), codebook (V, d)) in `dtype` (drawn in float64 from a
    CPU generator seeded with `seed`: the same problem on every machine)."""
    s = FLOW_SETTINGS[setting] if isinstance(setting, str) else setting
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    C = torch.randn(s.vocab_size, s.dim, generator=g, dtype=f64)
    C = C / C.norm(dim=1, keepdim=True)
    if not s.normalize:
        C = C * torch.exp(s.norm_spread * torch.randn(s.vocab_size, 1, generator=g, dtype=f64))
    logits = logit_std * torch.randn(n, s.vocab_size, generator=g, dtype=f64)
    if 0 < s.top_k < s.vocab_size:
        kth = logits.topk(s.top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=1)
    noise = torch.randn(n, s.dim, generator=g, dtype=f64)
    return noise.to(dtype), probs.to(dtype), C.to(dtype)


# Dormand-Prince 5(4) tableau (FSAL: the 7th stage is the next step's first).
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_ERR = (  # b5 - b4
    35 / 384 - 5179 / 57600,
    0.0,
    500 / 1113 - 7571 / 16695,
    125 / 192 - 393 / 640,
    -2187 / 6784 + 92097 / 339200,
    11 / 84 - 187 / 2100,
    -1 / 40,
)


@dataclass(frozen=True)
class ReferenceConfig:
    rtol: float = 1e-8
    atol: float = 1e-8
    prune_size: int = 256
    prune_mass: float = 1e-12
    certify_margin: float = 40.0
    rho_max: float = 1e6  # units of 1/s (s = RMS row norm of the codebook)
    max_rows: int = 256


class _RefRows:
    """Rows being integrated by the reference. The state variable is u = log(1 + rho s)."""

    def __init__(self, noise: Tensor, probs: Tensor, C: Tensor, cfg: ReferenceConfig):
        self.cfg, self.C = cfg, C
        self.scale = float(C.pow(2).sum(-1).mean().sqrt())
        self.c2 = C.pow(2).sum(-1)
        self.logp = log_probs(probs.double())
        B, M = noise.shape[0], min(cfg.prune_size, C.shape[0])
        self.M = M
        self.pruned = torch.zeros(B, dtype=torch.bool)
        self.idx = torch.zeros(B, M, dtype=torch.long)
        self.cand = torch.zeros(B, M, dtype=torch.long)  # top-M at the last evaluated point
        self.cand_ok = torch.zeros(B, dtype=torch.bool)  # ... holding all but prune_mass
        self.evals = torch.zeros(B, dtype=torch.int64)

    def rho(self, u: Tensor) -> Tensor:
        return torch.expm1(u) / self.scale

    def weights_full(self, rows: Tensor, y: Tensor, rho: Tensor) -> Tensor:
        E = self.logp[rows] + (rho * y) @ self.C.T - 0.5 * rho * rho * self.c2
        return torch.softmax(E, -1)

    def f(self, rows: Tensor, y: Tensor, u: Tensor, track: bool = False) -> Tensor:
        """dy/du = D(y, rho) drho/du for rows (n,), y (n, d), u (n, 1). With `track`, full rows
        record whether their top-M entries at this point hold all but prune_mass (`cand`)."""
        rho = self.rho(u)
        D = torch.empty_like(y)
        pr = self.pruned[rows]
        if bool((~pr).any()):
            r = rows[~pr]
            w = self.weights_full(r, y[~pr], rho[~pr])
            D[~pr] = w @ self.C
        if track and bool((~pr).any()):
            top = w.topk(self.M, dim=-1)
            self.cand[r] = top.indices
            self.cand_ok[r] = (1 - top.values.sum(-1)) <= self.cfg.prune_mass
        if bool(pr.any()):
            r = rows[pr]
            Cs = self.C[self.idx[r]]
            E = self.logp[r].gather(1, self.idx[r]) - 0.5 * (
                y[pr].unsqueeze(1) - rho[pr].unsqueeze(-1) * Cs
            ).pow(2).sum(-1)
            D[pr] = (torch.softmax(E, -1).unsqueeze(-1) * Cs).sum(1)
        self.evals[rows] += 1
        return D * (torch.exp(u) / self.scale)

    def accept_pruning(self, rows: Tensor) -> None:
        """Prune the accepted `rows` whose last evaluation (at their new point) allowed it."""
        ok = rows[self.cand_ok[rows] & ~self.pruned[rows]]
        self.idx[ok] = self.cand[ok]
        self.pruned[ok] = True

    def margin(self, rows: Tensor, y: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """(token (n,), margin (n,)); margin is -inf for rows not yet pruned."""
        tok = torch.zeros(rows.numel(), dtype=torch.long)
        m = torch.full((rows.numel(),), -math.inf, dtype=torch.float64)
        pr = self.pruned[rows]
        if bool(pr.any()):
            r = rows[pr]
            idx = self.idx[r]
            lps = self.logp[r].gather(1, idx)
            k, mm = collapse_margin(y[pr], self.C[idx], lps, self.rho(u[pr]).view(-1))
            tok[pr], m[pr] = idx.gather(1, k.unsqueeze(1)).squeeze(1), mm
        return tok, m


def _dopri_rows(st: _RefRows, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Integrate all rows of `st` to their certified end. Returns tokens (B,), rho_end (B,)."""
    cfg = st.cfg
    B = noise.shape[0]
    y = noise.double().clone()
    u = torch.zeros(B, 1, dtype=torch.float64)
    h = torch.full((B, 1), 0.05, dtype=torch.float64)
    tokens = torch.full((B,), -1, dtype=torch.long)
    rho_end = torch.zeros(B, dtype=torch.float64)
    u_max = math.log1p(cfg.rho_max)
    active = torch.arange(B)
    kfirst = st.f(active, y, u, track=True)  # FSAL: derivative at the current point of every row
    st.accept_pruning(active)
    while active.numel():
        ya, ua, ha = y[active], u[active], torch.minimum(h[active], u_max - u[active])
        ks = [kfirst[active]]
        for s in range(1, 7):
            yi = ya + ha * sum(a * kk for a, kk in zip(_DP_A[s], ks) if a != 0.0)
            ks.append(st.f(active, yi, ua + _DP_C[s] * ha, track=s == 6))
        y5 = ya + ha * sum(b * kk for b, kk in zip(_DP_A[6], ks) if b != 0.0)
        err = ha * sum(e * kk for e, kk in zip(_DP_ERR, ks) if e != 0.0)
        scale = cfg.atol + cfg.rtol * torch.maximum(ya.abs(), y5.abs())
        en = (err / scale).pow(2).mean(-1, keepdim=True).sqrt()
        ok = en.squeeze(1) <= 1
        h[active] = ha * (0.9 * en.clamp_min(1e-10).pow(-0.2)).clamp(0.2, 5.0)
        acc = active[ok]
        y[acc], u[acc], kfirst[acc] = y5[ok], ua[ok] + ha[ok], ks[6][ok]
        if acc.numel():
            st.accept_pruning(acc)
            tok, m = st.margin(acc, y[acc], u[acc])
            at_end = u[acc].squeeze(1) >= u_max - 1e-12
            fin = (m >= cfg.certify_margin) | at_end
            if bool((at_end & (m < cfg.certify_margin)).any()):
                tok = _argmax_at_end(st, acc, y[acc], u[acc], tok,
                                     at_end & ~(m >= cfg.certify_margin))
            tokens[acc[fin]] = tok[fin]
            rho_end[acc[fin]] = torch.expm1(u[acc[fin]]).squeeze(1)
            done = torch.zeros(B, dtype=torch.bool)
            done[acc[fin]] = True
            active = active[~done[active]]
    return tokens, rho_end


def _argmax_at_end(st: _RefRows, rows: Tensor, y: Tensor, u: Tensor, tok: Tensor,
                   sel: Tensor) -> Tensor:
    """Rows that reached rho_max uncertified (degenerate codebooks): posterior argmax."""
    w = st.weights_full(rows[sel], y[sel], st.rho(u[sel]))
    tok = tok.clone()
    tok[sel] = w.argmax(-1)
    return tok


@dataclass
class ReferenceResult:
    """tokens: (...) int64; evals: (...) int64 denoiser evaluations per row; rho_end: (...)
    float64 rho * s where the row was decided."""

    tokens: Tensor
    evals: Tensor
    rho_end: Tensor


def reference_solve(
    noise: Tensor, probs: Tensor, codebook: Tensor, config: ReferenceConfig | None = None
) -> ReferenceResult:
    """The flow map computed by the float64 reference (shapes as `map_noise_to_tokens`).
    Runs on the CPU (moves inputs there); the result is on the device of `noise`."""
    cfg = config or ReferenceConfig()
    check_flow_inputs(noise, probs, codebook)
    lead, (V, d) = noise.shape[:-1], codebook.shape
    x = noise.reshape(-1, d).cpu()
    p = probs.reshape(-1, V).cpu()
    C = codebook.detach().cpu().double()
    toks, evals, rend = [], [], []
    for r0 in range(0, x.shape[0], cfg.max_rows):
        st = _RefRows(x[r0 : r0 + cfg.max_rows], p[r0 : r0 + cfg.max_rows], C, cfg)
        t, r = _dopri_rows(st, x[r0 : r0 + cfg.max_rows])
        toks.append(t)
        evals.append(st.evals)
        rend.append(r)
    if not toks:
        z = torch.zeros(lead, dtype=torch.long, device=noise.device)
        return ReferenceResult(z, z.clone(), z.double())
    def out(parts: list[Tensor]) -> Tensor:
        return torch.cat(parts).reshape(lead).to(noise.device)

    return ReferenceResult(out(toks), out(evals), out(rend))


def reference_map_noise_to_tokens(noise: Tensor, probs: Tensor, codebook: Tensor) -> Tensor:
    """(..., d), (..., V), (V, d) -> (...) int64 tokens of the float64 reference solver."""
    return reference_solve(noise, probs, codebook).tokens
