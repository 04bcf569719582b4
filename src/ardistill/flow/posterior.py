"""The posterior of a Dirac mixture under the flow interpolant, and input checks (method.md §2).

Time convention (the one used everywhere in ardistill): `x_t = (1 - t) x0 + t eps`, t = 1 is
noise, t = 0 is data. For one position with distribution `p` over codebook vectors `c_j`:

    w_j(x, t) ∝ p_j exp(-||x - (1 - t) c_j||^2 / (2 t^2))      (posterior over entries)
    D(x, t)   = sum_j w_j c_j                                   (denoiser)
    v(x, t)   = (x - D(x, t)) / t                               (velocity, dx/dt = v)
    s(x, t)   = -(x - (1 - t) D(x, t)) / t^2                    (score, grad_x log p_t(x))

These textbook forms are the reference of the tests and the teacher's exact conditional score
of DD2 (method.md §10); the solver (`flow.kernels`) computes the same posterior in its own
variables, in fixed-size row blocks. The solver works in two other variables: the
signal-to-noise ratio `rho = (1 - t) / t` (0 at noise, infinite at data) and the rescaled state
`y = x / t`. Expanding the square,

    log w_j = log p_j + rho <y, c_j> - rho^2 ||c_j||^2 / 2 + (a constant per row)
    dy/drho = D(y, rho),  y(rho = 0) = eps,

(from dx/dt = (x - D)/t: dy/dt = -D/t^2 and drho/dt = -1/t^2). So the state only ever moves
by the denoiser: an Euler step in rho is the DDIM step, and higher-order steps integrate
an interpolant of D over rho (`ardistill.flow.solver`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def flow_sum_tolerance(dtype: torch.dtype, vocab_size: int) -> float:
    """How far a row of `probs` may sum from 1 before it is rejected.

    `max(1e-6 * sqrt(V), 4 * eps(dtype))`. Measured (float32 softmax of Gaussian logits with
    std 1 to 10, with and without top-k / top-p renormalisation, V = 512..16384): the largest
    |sum - 1| was 0.47 eps32 sqrt(V) (7e-6 at V = 16384), 18x to 37x inside this bound. A bf16
    softmax cast to float32 is off by up to 3e-3, 10x inside `4 * eps(bf16)`.
    """
    return max(1e-6 * math.sqrt(vocab_size), 4.0 * torch.finfo(dtype).eps)


def check_flow_inputs(noise: Tensor, probs: Tensor, codebook: Tensor) -> None:
    """Raise ValueError naming the problem when the inputs of the flow map are inconsistent.

    noise: (..., d) float; probs: (..., V) float, same leading shape, entries >= 0, rows
    summing to 1 within `flow_sum_tolerance`; codebook: (V, d) float. All finite, one device.
    """
    check_codebook(codebook)
    for name, x in (("noise", noise), ("probs", probs)):
        _check_float_tensor(name, x)
    V, d = codebook.shape
    if noise.dim() < 1 or noise.shape[-1] != d:
        raise ValueError(
            f"noise must be (..., d) with d = {d} (codebook dim), got {tuple(noise.shape)}")
    if probs.dim() < 1 or probs.shape[-1] != V:
        raise ValueError(
            f"probs must be (..., V) with V = {V} (codebook size), got {tuple(probs.shape)}")
    if probs.shape[:-1] != noise.shape[:-1]:
        raise ValueError(
            f"leading shapes differ: noise {tuple(noise.shape)} vs probs {tuple(probs.shape)}"
        )
    if not (noise.device == probs.device == codebook.device):
        raise ValueError(
            f"inputs on different devices: noise {noise.device}, probs {probs.device}, "
            f"codebook {codebook.device}"
        )
    _check_values("noise", noise.reshape(-1, d))
    flat = probs.reshape(-1, V)
    tol = flow_sum_tolerance(probs.dtype, V)
    rows = max(1, (1 << 22) // V)  # value checks in row chunks: bounded extra memory
    for r0 in range(0, flat.shape[0], rows):
        _check_probs_rows(flat[r0 : r0 + rows], r0, tol)


def check_codebook(codebook: Tensor) -> None:
    """Raise ValueError unless codebook is a finite floating-point (V, d) tensor, V, d >= 1."""
    _check_float_tensor("codebook", codebook)
    if codebook.dim() != 2 or codebook.shape[0] < 1 or codebook.shape[1] < 1:
        raise ValueError(f"codebook must be (V, d) with V, d >= 1, got {tuple(codebook.shape)}")
    _check_values("codebook", codebook)


def _check_float_tensor(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_values(name: str, x: Tensor) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN/inf entries (first at flat index {where})")


def _check_probs_rows(p: Tensor, r0: int, tol: float) -> None:
    """p: (n, V) rows r0.. of the flattened probs.

    Fast path (two passes: a global min and the row sums): entries >= 0 and finite row sums
    imply finite entries (a NaN or +inf entry makes its row sum NaN or inf, -inf fails the
    min). Only a failing chunk is re-scanned to name the problem."""
    acc = torch.float64 if p.dtype == torch.float64 else torch.float32
    sums = p.sum(-1, dtype=acc)  # float32 sum: error ~1e-7 at V = 16384, far inside tol
    if p.numel() and bool(p.amin() >= 0) and bool(((sums - 1).abs() <= tol).all()):
        return
    _check_values("probs", p)
    neg = p < 0
    if bool(neg.any()):
        i, j = (int(v) for v in neg.nonzero()[0].tolist())
        raise ValueError(
            f"probs has negative entries (row {r0 + i} of the flattened rows, entry {j}: "
            f"{p[i, j].item():.3g})"
        )
    sums = p.sum(-1, dtype=torch.float64)
    err = (sums - 1).abs()
    if not bool((err > tol).any()):
        return  # within tolerance in float64 (the float32 sum was just outside)
    i = int(err.argmax())
    raise ValueError(
        f"probs rows must sum to 1 (tolerance {tol:.2g} for {p.dtype}, V = {p.shape[-1]}); "
        f"row {r0 + i} of the flattened rows sums to {sums[i].item():.8g}"
    )


def log_probs(probs: Tensor) -> Tensor:
    """(..., V) probabilities (>= 0) -> log probabilities; zero entries give -inf (never
    contribute). One pass: IEEE log(0) is -inf (3x faster than masking, docs/flow.md)."""
    return probs.log()


def _rho_y(x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if bool(((t <= 0) | (t > 1)).any()):
        raise ValueError("t must lie in (0, 1] (t = 1 is noise; t = 0 would be the data itself)")
    t = t.unsqueeze(-1) if t.dim() else t
    return (1 - t) / t, x / t


def posterior_log_weights(x: Tensor, t: Tensor | float, probs: Tensor, codebook: Tensor) -> Tensor:
    """log w_j(x, t), normalised over j (method.md §2).

    x: (..., d) float; t: float or (...) tensor in (0, 1]; probs: (..., V); codebook: (V, d).
    Returns (..., V) in the dtype of x; -inf where probs is 0.
    """
    rho, y = _rho_y(x, t)
    C = codebook.to(x.dtype)
    logits = (
        log_probs(probs.to(x.dtype))
        + rho * (y @ C.T)
        - 0.5 * rho * rho * (C * C).sum(-1)
    )
    return torch.log_softmax(logits, dim=-1)


def denoiser(x: Tensor, t: Tensor | float, probs: Tensor, codebook: Tensor) -> Tensor:
    """D(x, t) = E[x0 | x_t = x] = sum_j w_j c_j. Shapes as `posterior_log_weights`; (..., d)."""
    w = posterior_log_weights(x, t, probs, codebook).exp()
    return w @ codebook.to(x.dtype)


def velocity(x: Tensor, t: Tensor | float, probs: Tensor, codebook: Tensor) -> Tensor:
    """v(x, t) = (x - D(x, t)) / t, the flow's dx/dt (integrated from t = 1 down to t = 0)."""
    t_ = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t_ = t_.unsqueeze(-1) if t_.dim() else t_
    return (x - denoiser(x, t, probs, codebook)) / t_


def score(x: Tensor, t: Tensor | float, probs: Tensor, codebook: Tensor) -> Tensor:
    """The score of the noised mixture, grad_x log p_t(x) = -(x - (1 - t) D(x, t)) / t^2
    (p_t: the law of x_t = (1 - t) x0 + t eps, x0 ~ sum_j p_j delta(c_j)). Shapes as
    `posterior_log_weights`; returns (..., d) in x's dtype. method.md §10."""
    t_ = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t_ = t_.unsqueeze(-1) if t_.dim() else t_
    return -(x - (1 - t_) * denoiser(x, t, probs, codebook)) / (t_ * t_)
