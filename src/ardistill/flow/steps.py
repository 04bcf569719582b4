"""Time variable and multistep weights of the flow solver.

The solver integrates `dy/drho = D(y, rho)` (`ardistill.flow.posterior`) in the variable

    u = log(1 + rho s / knee),      rho(u) = knee (e^u - 1) / s,

where s is the RMS norm of the codebook rows (the ODE in `rho s` does not depend on the
codebook's scale). Steps of equal width in u are uniform in rho near the noise end (u << 1)
and uniform in log-SNR near the data end, where the posterior sharpens.

A step from u_n to u_{n+1} integrates a polynomial interpolant of D in u exactly over rho
(`adams_weights`): the predictor uses the last k nodes (Adams-Bashforth, order k), the
corrector adds the new node (Adams-Moulton, order k + 1) and reuses the evaluation that the
next step needs anyway (the UniPC trick): one denoiser evaluation per step. All per row:
rows may sit at different u (adaptive steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

# Gauss-Legendre nodes and weights on [-1, 1]: exact for the degree <= 4 interpolants here up
# to the smooth factor e^u, whose variation over one step the 8 nodes resolve to float64.
_GL_X, _GL_W = (tuple(float(v) for v in a) for a in np.polynomial.legendre.leggauss(8))


@dataclass(frozen=True)
class TimeVariable:
    """u <-> rho for one codebook. knee: in units of 1/s; scale: s (RMS row norm)."""

    knee: float
    scale: float

    def rho(self, u: Tensor) -> Tensor:
        return self.knee * torch.expm1(u) / self.scale

    def u_at(self, rho_s: float) -> float:
        """u where rho * s = rho_s."""
        return math.log1p(rho_s / self.knee)

    def t(self, u: Tensor) -> Tensor:
        """The flow time t = 1 / (1 + rho) (t = 1 noise, t = 0 data)."""
        return 1.0 / (1.0 + self.rho(u))


def adams_weights(nodes: Tensor, a: Tensor, b: Tensor, tv: TimeVariable) -> Tensor:
    """Weights of the interpolation nodes in int_a^b D drho, per row.

    nodes: (n, k) float64 u-values of the nodes (distinct within a row); a, b: (n,) float64
    interval. Returns (n, k) float64: int_a^b l_i(u) (drho/du) du with l_i the Lagrange basis
    polynomial of node i. Elementwise only (no reduction across rows or in a shape-dependent
    order): a row's weights do not depend on the other rows.
    """
    n, k = nodes.shape
    half = 0.5 * (b - a)
    out = torch.zeros_like(nodes)
    for xq, wq in zip(_GL_X, _GL_W):
        uq = a + half * (xq + 1.0)
        wt = half * wq * (tv.knee / tv.scale) * torch.exp(uq)  # quadrature weight * drho/du
        for i in range(k):
            li = wt
            for j in range(k):
                if j != i:
                    li = li * (uq - nodes[:, j]) / (nodes[:, i] - nodes[:, j])
            out[:, i] += li
    return out


@dataclass
class Grid:
    """The solver's grid: `num_steps` equal steps in u up to u_split, then steps `tail_du`
    wide (as many as the last undecided row needs). All rows of a call share it."""

    tv: TimeVariable
    num_steps: int
    u_split: float
    tail_du: float
    order: int
    _weights: dict = field(default_factory=dict, repr=False)

    def u(self, n: int) -> float:
        if n <= self.num_steps:
            return self.u_split * n / self.num_steps
        return self.u_split + (n - self.num_steps) * self.tail_du

    def weights(self, n: int) -> tuple[list[float], list[float]]:
        """Adams weights of the step u(n) -> u(n + 1): predictor (of D_n, D_{n-1}, ...) and
        corrector (of D_{n+1}, D_n, ...), with min(order, n + 1) history nodes."""
        if n not in self._weights:
            k = min(self.order, n + 1)
            a = torch.tensor([self.u(n)], dtype=torch.float64)
            b = torch.tensor([self.u(n + 1)], dtype=torch.float64)
            old = [self.u(n - i) for i in range(k)]
            pred = adams_weights(torch.tensor([old], dtype=torch.float64), a, b, self.tv)
            corr = adams_weights(torch.tensor([[self.u(n + 1)] + old], dtype=torch.float64),
                                 a, b, self.tv)
            self._weights[n] = (pred[0].tolist(), corr[0].tolist())
        return self._weights[n]
