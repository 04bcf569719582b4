"""Bad input raises ValueError naming the problem."""

from __future__ import annotations

import math

import pytest
import torch

from ardistill.flow import FlowSolverConfig, flow_sum_tolerance, map_noise_to_tokens


def _ok(n=4, V=10, d=3):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, d, generator=g), torch.softmax(torch.randn(n, V, generator=g), -1),
            torch.randn(V, d, generator=g))


def test_valid_input_passes():
    assert map_noise_to_tokens(*_ok()).shape == (4,)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x, p, c: (x[:, :2], p, c), "noise must be"),
        (lambda x, p, c: (x, p[:, :9], c), "probs must be"),
        (lambda x, p, c: (x[:3], p, c), "leading shapes differ"),
        (lambda x, p, c: (x, p, c[0]), "codebook must be"),
        (lambda x, p, c: (x.long(), p, c), "noise must be a floating"),
        (lambda x, p, c: (x, p, c.int()), "codebook must be a floating"),
        (lambda x, p, c: (x.tolist(), p, c), "noise must be a torch.Tensor"),
    ],
)
def test_shape_and_dtype_errors(mutate, match):
    with pytest.raises(ValueError, match=match):
        map_noise_to_tokens(*mutate(*_ok()))


@pytest.mark.parametrize("which", ["noise", "probs", "codebook"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite(which, bad):
    x, p, c = _ok()
    {"noise": x, "probs": p, "codebook": c}[which][1, 2] = bad
    with pytest.raises(ValueError, match=f"{which} has 1 NaN/inf"):
        map_noise_to_tokens(x, p, c)


def test_negative_probs():
    x, p, c = _ok()
    p[2, 3] = -1e-3
    p[2, 4] += 1e-3
    with pytest.raises(ValueError, match="negative entries.*row 2.*entry 3"):
        map_noise_to_tokens(x, p, c)


def test_rows_must_sum_to_one():
    x, p, c = _ok()
    p[1] *= 1.01
    with pytest.raises(ValueError, match=r"row 1 .*sums to 1\.00999"):
        map_noise_to_tokens(x, p, c)
    x, p, c = _ok()
    p[3] = 0
    with pytest.raises(ValueError, match="row 3 .*sums to 0"):
        map_noise_to_tokens(x, p, c)


def test_tolerance_accepts_float32_softmax_rows():
    # The measured worst case of a float32 softmax (docs/flow.md) is far inside the tolerance;
    # a real normalisation bug (a row of top-p mass without renormalising) is far outside it.
    V = 16384
    tol = flow_sum_tolerance(torch.float32, V)
    g = torch.Generator().manual_seed(0)
    logits = 4.5 * torch.randn(64, V, generator=g)
    p = torch.softmax(logits, -1)
    assert float((p.double().sum(-1) - 1).abs().max()) < tol / 10
    assert 1 - 0.95 > 100 * tol
    x = torch.randn(64, 8, generator=g)
    c = torch.nn.functional.normalize(torch.randn(V, 8, generator=g), dim=-1)
    map_noise_to_tokens(x[:2], p[:2], c)  # accepted


@pytest.mark.parametrize("kw", [dict(num_steps=0), dict(order=5), dict(max_rows=100),
                                dict(knee=0.0), dict(rho_max=1.0)])
def test_bad_config(kw):
    with pytest.raises(ValueError):
        FlowSolverConfig(**kw)
