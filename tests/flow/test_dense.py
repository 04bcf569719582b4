"""`flow.dense.DenseFlowMap`: the small-codebook solver of the DD choice against `FlowMap`, the
reference, row invariance and edge cases (its one-hot and zero-probability cases run beside
`FlowMap`'s in test_map.py)."""

from __future__ import annotations

import pytest
import torch

from ardistill.core.choosers import choice_map, choice_solver_config
from ardistill.flow import FlowMap, FlowSolverConfig
from ardistill.flow.dense import BLOCK_ROWS, DENSE_MAX_VOCAB, DenseFlowMap
from ardistill.flow.reference import FlowSetting, make_flow_problem, reference_solve

SMALL_LLAMAGEN = FlowSetting("small-llamagen", 1024, 8, 500, normalize=True)
SMALL_VAR = FlowSetting("small-var", 512, 32, 200, normalize=False, norm_spread=0.3)
MNIST_VAR = FlowSetting("mnist-var-like", 256, 16, 0, normalize=False, norm_spread=0.3)


@pytest.mark.parametrize("setting", [SMALL_LLAMAGEN, SMALL_VAR, MNIST_VAR], ids=lambda s: s.name)
@pytest.mark.parametrize("logit_std", [1.0, 4.5], ids=["flat", "peaked"])
def test_same_tokens_as_the_pruned_solver_and_the_reference(setting, logit_std):
    """Same ODE, grid and certificate: the tokens of `FlowMap` with the same configuration
    (measured 100% on these problems and on the shipped students' inputs), and with the exact
    configuration the reference's tokens as `FlowMap` gets them."""
    noise, probs, C = make_flow_problem(setting, 300, logit_std, seed=11)
    for cfg in (choice_solver_config(None, C.shape[0]), FlowSolverConfig()):
        dense = DenseFlowMap(C, cfg).solve(noise, probs)
        pruned = FlowMap(C, cfg).solve(noise, probs)
        assert dense.tokens.dtype == torch.int64 and dense.tokens.shape == (300,)
        assert int((dense.tokens != pruned.tokens).sum()) <= 1
        assert bool((dense.full_evals >= 1).all()) and int(dense.pruned_evals.sum()) == 0
    ref = reference_solve(noise[:150], probs[:150], C).tokens
    exact = DenseFlowMap(C, FlowSolverConfig())(noise[:150], probs[:150])
    assert int((exact != ref).sum()) <= 1


def test_rows_do_not_depend_on_the_batch_around_them():
    """Bitwise: a row alone, in a batch, permuted or in other chunks has the same decision
    point and cost (the GEMMs run on fixed blocks of BLOCK_ROWS rows)."""
    noise, probs, C = make_flow_problem(MNIST_VAR, 3 * BLOCK_ROWS + 5, 2.0, seed=3)
    fm = DenseFlowMap(C, choice_solver_config(None))
    big = fm.solve(noise, probs)
    assert torch.equal(fm(noise, probs), big.tokens)
    for i in (0, 40, noise.shape[0] - 1):
        one = fm.solve(noise[i : i + 1], probs[i : i + 1])
        assert int(one.tokens[0]) == int(big.tokens[i])
        assert float(one.rho_end[0]) == float(big.rho_end[i])
        assert int(one.full_evals[0]) == int(big.full_evals[i])
    perm = torch.randperm(noise.shape[0], generator=torch.Generator().manual_seed(0))
    moved = fm.solve(noise[perm], probs[perm])
    assert torch.equal(moved.tokens, big.tokens[perm])
    assert torch.equal(moved.rho_end, big.rho_end[perm])
    fm.chunk_rows = BLOCK_ROWS  # several chunks, the last one short
    assert torch.equal(fm.solve(noise, probs).rho_end, big.rho_end)


def test_repeated_entries_hard_stop_and_shapes():
    g = torch.Generator().manual_seed(4)
    V, d, n = 40, 3, 50
    C = torch.randn(V, d, generator=g)
    C[7] = C[3]  # a repeated entry: the certificate ignores its twin
    probs = torch.softmax(2 * torch.randn(n, V, generator=g), -1)
    noise = torch.randn(n, d, generator=g)
    r = DenseFlowMap(C).solve(noise, probs)
    assert bool((r.rho_end < 1e4).all())  # every row certified before the hard stop
    assert bool((probs.gather(1, r.tokens[:, None]) > 0).all())
    # a certificate no row can pass: every row is decided at the hard stop by its argmax
    stop = FlowSolverConfig(rho_max=8.0, certify_margin=1e9)
    s = DenseFlowMap(C, stop).solve(noise, probs)
    assert bool((s.rho_end <= 8.0).all()) and bool((s.rho_end > 4.0).all())
    assert int((s.tokens != r.tokens).sum()) <= n // 10
    # leading shapes, a single row, empty input, a one-entry codebook
    fm = DenseFlowMap(C)
    shaped = fm(noise[:12].view(2, 3, 2, d), probs[:12].view(2, 3, 2, V))
    assert shaped.shape == (2, 3, 2) and torch.equal(shaped.reshape(-1), r.tokens[:12])
    assert fm(noise[0], probs[0]).shape == ()
    assert fm(noise[:0].view(0, 5, d), probs[:0].view(0, 5, V)).shape == (0, 5)
    one = DenseFlowMap(C[:1])(noise[:4], torch.ones(4, 1))
    assert torch.equal(one, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="probs"):
        fm(noise, probs[:, :-1])


def test_the_choice_takes_the_compiled_loop_else_the_dense_solver_for_small_codebooks(
        monkeypatch):
    """With the compiled kernel the choice is the pruned `FlowMap` (its steps in C) at every
    size; without it (CUDA, no compiler) the dense solver up to DENSE_MAX_VOCAB."""
    from ardistill.flow import native

    small = torch.randn(DENSE_MAX_VOCAB, 8)
    big = torch.randn(DENSE_MAX_VOCAB + 8, 8)
    assert native.available(), native._state.get("why")
    fm = choice_map(small)
    assert type(fm) is FlowMap and fm.packed is not None and fm.native_loop
    assert choice_map(small, 7).cfg.num_steps == 7
    odd = torch.randn(DENSE_MAX_VOCAB - 1, 8)  # V not a multiple of 8: no compiled kernel
    assert isinstance(choice_map(odd), DenseFlowMap)
    monkeypatch.setenv("ARDISTILL_NATIVE", "0")
    assert isinstance(choice_map(small), DenseFlowMap)
    assert choice_map(small, 7).cfg.num_steps == 7
    assert type(choice_map(big)) is FlowMap


def test_certificate_equals_the_pruned_kernel_over_the_whole_codebook():
    """`_certify` (from inner products, G and the pairwise distances) is
    `kernels.collapse_margin` with every entry kept: the same winner and margin."""
    from ardistill.flow.kernels import collapse_margin

    noise, probs, C = make_flow_problem(MNIST_VAR, 2 * BLOCK_ROWS, 3.0, seed=5)
    probs[:5, :100] = 0.0  # zero-probability entries never count
    probs = probs / probs.sum(-1, keepdim=True)
    C = C.clone()
    C[9] = C[2]  # a repeated entry is ignored by both
    fm = DenseFlowMap(C)
    C64, lp = C.double(), probs.double().log()
    for rho_s in (0.0, 0.8, 3.0, 12.0, 60.0):
        rho = rho_s / fm.tv.scale
        y = noise.double() + rho * C64[probs.argmax(-1)]  # near the flow's path to the mode
        k, margin = fm._certify(y, lp, rho)
        R = y.shape[0]
        k2, margin2 = collapse_margin(y, C64.expand(R, -1, -1), lp,
                                      torch.full((R,), rho, dtype=torch.float64))
        assert torch.equal(k, k2)
        fin = torch.isfinite(margin2)
        assert torch.equal(fin, torch.isfinite(margin))
        assert torch.allclose(margin[fin], margin2[fin], rtol=1e-9, atol=1e-6 * (1 + rho_s**2))
        assert bool((margin >= 5).any()) or rho_s < 10  # the test reaches decided rows
