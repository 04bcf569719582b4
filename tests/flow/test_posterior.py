"""Posterior weights, denoiser, velocity and score against the textbook formulas
(method.md §2, §10)."""

from __future__ import annotations

import math

import pytest
import torch

from ardistill.flow import denoiser, posterior_log_weights, score, velocity


def _problem(seed: int = 0, V: int = 37, d: int = 5, n: int = 11):
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(V, d, generator=g, dtype=torch.float64) * 1.7
    p = torch.softmax(2 * torch.randn(n, V, generator=g, dtype=torch.float64), -1)
    p[:, :5] = 0  # zero-probability entries
    p = p / p.sum(-1, keepdim=True)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, p, C


def _direct_log_weights(x, t, p, C):
    # w_j ∝ p_j exp(-||x - (1 - t) c_j||^2 / (2 t^2)), written out term by term.
    d2 = ((x[:, None, :] - (1 - t) * C[None]) ** 2).sum(-1)
    logits = p.log() - d2 / (2 * t * t)
    return torch.log_softmax(logits, -1)


@pytest.mark.parametrize("t", [1.0, 0.7, 0.2, 0.03])
def test_log_weights_match_formula(t):
    x, p, C = _problem()
    got = posterior_log_weights(x, t, p, C)
    want = _direct_log_weights(x, t, p, C)
    finite = p > 0
    assert torch.allclose(got[finite], want[finite], atol=1e-9, rtol=1e-9)
    assert torch.isinf(got[~finite]).all() and (got[~finite] < 0).all()


def test_t_one_gives_prior_and_small_t_the_nearest_entry():
    x, p, C = _problem(1)
    assert torch.allclose(posterior_log_weights(x, 1.0, p, C).exp(), p, atol=1e-12)
    # near t = 0 the posterior sits on the supported entry nearest to x / (1 - t)
    t = 1e-4
    w = posterior_log_weights(x * (1 - t), t, p, C).exp()
    d2 = ((x[:, None, :] - C[None]) ** 2).sum(-1).masked_fill(p == 0, math.inf)
    assert torch.equal(w.argmax(-1), d2.argmin(-1))


def test_denoiser_and_velocity():
    x, p, C = _problem(2)
    t = torch.linspace(0.1, 0.9, x.shape[0], dtype=torch.float64)  # one t per row
    w = torch.stack([_direct_log_weights(x[i : i + 1], float(t[i]), p[i : i + 1], C)[0]
                     for i in range(x.shape[0])]).exp()
    D = w @ C
    assert torch.allclose(denoiser(x, t, p, C), D, atol=1e-12)
    assert torch.allclose(velocity(x, t, p, C), (x - D) / t[:, None], atol=1e-10)


def test_velocity_of_one_hot_points_at_the_entry():
    # One entry: the flow is the straight line x_t = (1 - t) c + t eps, v = eps - c.
    C = torch.tensor([[1.0, -2.0], [0.5, 0.5]], dtype=torch.float64)
    p = torch.tensor([1.0, 0.0], dtype=torch.float64)
    eps = torch.tensor([0.3, 0.9], dtype=torch.float64)
    for t in (0.9, 0.5, 0.1):
        x = (1 - t) * C[0] + t * eps
        assert torch.allclose(velocity(x, t, p, C), eps - C[0], atol=1e-12)


@pytest.mark.parametrize("t", [0.0, -0.5, 1.5])
def test_bad_t(t):
    x, p, C = _problem()
    with pytest.raises(ValueError, match="t must lie in"):
        posterior_log_weights(x, t, p, C)


@pytest.mark.parametrize("zeros", [False, True])
def test_score_is_the_gradient_of_the_log_mixture_density(zeros):
    """score(x, t) = grad_x log p_t(x), p_t(x) = sum_j p_j N(x; (1 - t) c_j, t^2 I), float64."""
    g = torch.Generator().manual_seed(5)
    V, d, B = 12, 3, 7
    C = torch.randn(V, d, generator=g, dtype=torch.float64)
    p = torch.rand(B, V, generator=g, dtype=torch.float64)
    if zeros:  # top-k style zeros
        p[:, ::3] = 0.0
    p = p / p.sum(-1, keepdim=True)
    x = torch.randn(B, d, generator=g, dtype=torch.float64).requires_grad_(True)
    t = torch.rand(B, generator=g, dtype=torch.float64) * 0.9 + 0.05
    mean = (1 - t)[:, None, None] * C[None]  # (B, V, d)
    log_n = -((x[:, None] - mean) ** 2).sum(-1) / (2 * t[:, None] ** 2) - d * torch.log(t)[:, None]
    log_pt = torch.logsumexp(torch.log(p) + log_n, dim=-1)
    (grad,) = torch.autograd.grad(log_pt.sum(), x)
    torch.testing.assert_close(score(x.detach(), t, p, C), grad, rtol=1e-9, atol=1e-9)
