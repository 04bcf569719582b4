"""`map_noise_to_tokens`: agreement with the reference, exact cases, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch

from ardistill.core.choosers import choice_solver_config
from ardistill.flow import FlowMap, FlowSolverConfig, map_noise_to_tokens, solve_flow
from ardistill.flow.dense import DenseFlowMap
from ardistill.flow.reference import FlowSetting, make_flow_problem, reference_solve

# Scaled-down versions of the two benchmark settings (docs/flow.md), fast enough for CI.
SMALL_LLAMAGEN = FlowSetting("small-llamagen", 1024, 8, 500, normalize=True)
SMALL_VAR = FlowSetting("small-var", 512, 32, 200, normalize=False, norm_spread=0.3)


@pytest.mark.parametrize("setting", [SMALL_LLAMAGEN, SMALL_VAR], ids=lambda s: s.name)
@pytest.mark.parametrize("logit_std", [1.0, 4.5], ids=["flat", "peaked"])
def test_agrees_with_reference(setting, logit_std):
    noise, probs, C = make_flow_problem(setting, 150, logit_std, seed=11)
    got = map_noise_to_tokens(noise, probs, C)
    ref = reference_solve(noise, probs, C).tokens
    assert got.dtype == torch.int64 and got.shape == (150,)
    assert int((got != ref).sum()) <= 1  # default solver: >= 99.9% agreement (docs/flow.md)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llamagen", "var"])
def test_agrees_with_reference_full_size(name):
    for logit_std in (1.0, 4.5):
        noise, probs, C = make_flow_problem(name, 200, logit_std, seed=12)
        got = map_noise_to_tokens(noise, probs, C)
        ref = reference_solve(noise, probs, C).tokens
        assert int((got != ref).sum()) <= 1


@pytest.mark.parametrize("solver", ["pruned", "dense"])
def test_one_hot_is_exact(solver):
    g = torch.Generator().manual_seed(0)
    V, d, n = 300, 6, 64
    C = torch.randn(V, d, generator=g)
    hot = torch.randint(0, V, (n,), generator=g)
    probs = torch.zeros(n, V).scatter_(1, hot[:, None], 1.0)
    noise = torch.randn(n, d, generator=g) * torch.logspace(-3, 3, n)[:, None]  # any noise
    if solver == "pruned":
        r = solve_flow(noise, probs, C)
        assert int(r.full_evals.sum()) == 0  # decided at t = 1 from the support alone
    else:  # the dense solver evaluates every row once, then certifies at t = 1
        r = DenseFlowMap(C).solve(noise, probs)
        assert bool((r.full_evals == 1).all()) and bool((r.rho_end == 0).all())
    assert torch.equal(r.tokens, hot)


@pytest.mark.parametrize("solver", ["pruned", "dense"])
def test_zero_probability_tokens_are_never_returned(solver):
    g = torch.Generator().manual_seed(1)
    V, d, n = 400, 4, 600
    C = torch.randn(V, d, generator=g)
    logits = 3 * torch.randn(n, V, generator=g)
    keep = torch.rand(n, V, generator=g) < torch.rand(n, 1, generator=g).clamp_min(0.01)
    keep[torch.arange(n), torch.randint(0, V, (n,), generator=g)] = True
    probs = torch.softmax(logits.masked_fill(~keep, -math.inf), -1)
    # noise placed right on zero-probability entries: the nearest entry is always forbidden
    forbidden = torch.multinomial((~keep).float() + 1e-9, 1, generator=g).squeeze(1)
    noise = C[forbidden] + 0.01 * torch.randn(n, d, generator=g)
    if solver == "pruned":
        tok = map_noise_to_tokens(noise, probs, C)
    else:  # the DD choice's configuration, whole codebook
        tok = DenseFlowMap(C, choice_solver_config(None))(noise, probs)
    assert bool((probs.gather(1, tok[:, None]) > 0).all())


def test_leading_shapes_and_empty():
    noise, probs, C = make_flow_problem(SMALL_VAR, 12, 1.0, seed=2)
    flat = map_noise_to_tokens(noise, probs, C)
    shaped = map_noise_to_tokens(noise.view(2, 3, 2, -1), probs.view(2, 3, 2, -1), C)
    assert shaped.shape == (2, 3, 2) and torch.equal(shaped.reshape(-1), flat)
    one = map_noise_to_tokens(noise[0], probs[0], C)
    assert one.shape == () and int(one) == int(flat[0])
    d, V = noise.shape[-1], probs.shape[-1]
    empty = map_noise_to_tokens(noise[:0].view(0, 5, d), probs[:0].view(0, 5, V), C)
    assert empty.shape == (0, 5) and empty.dtype == torch.int64


def test_deterministic_and_batch_invariant():
    # A row's token must not depend on the batch around it, on the chunking or on the order:
    # pair generation relies on it (same noise -> same pairs at any batch size).
    noise, probs, C = make_flow_problem(SMALL_LLAMAGEN, 300, 2.0, seed=3)
    big = map_noise_to_tokens(noise, probs, C)
    assert torch.equal(big, map_noise_to_tokens(noise, probs, C))
    for i in (0, 37, 299):
        assert int(map_noise_to_tokens(noise[i : i + 1], probs[i : i + 1], C)) == int(big[i])
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    assert torch.equal(map_noise_to_tokens(noise[perm], probs[perm], C), big[perm])
    for max_rows in (32, 96):
        r = solve_flow(noise, probs, C, FlowSolverConfig(max_rows=max_rows))
        assert torch.equal(r.tokens, big)


def test_bitwise_row_invariance_of_state():
    # Stronger than equal tokens: the decision point and the cost of a row are the same alone
    # or in a batch, so its floating-point trajectory was the same.
    noise, probs, C = make_flow_problem(SMALL_VAR, 70, 1.0, seed=4)
    fm = FlowMap(C)
    big = fm.solve(noise, probs)
    for i in (3, 69):
        one = fm.solve(noise[i : i + 1], probs[i : i + 1])
        assert float(one.rho_end[0]) == float(big.rho_end[i])
        assert int(one.full_evals[0]) == int(big.full_evals[i])


def test_more_steps_cost_more_full_evaluations():
    noise, probs, C = make_flow_problem(SMALL_LLAMAGEN, 64, 1.0, seed=5)
    a = solve_flow(noise, probs, C, FlowSolverConfig(num_steps=8))
    b = solve_flow(noise, probs, C, FlowSolverConfig(num_steps=24))
    assert a.full_evals.float().mean() < b.full_evals.float().mean()


def test_float64_compute_dtype_agrees():
    noise, probs, C = make_flow_problem(SMALL_VAR, 100, 1.0, seed=6)
    a = map_noise_to_tokens(noise, probs, C)
    b = solve_flow(noise.double(), probs.double(), C.double(),
                   FlowSolverConfig(dtype=torch.float64)).tokens
    assert int((a != b).sum()) <= 1
