"""The samplers on tiny real teachers and students (both families)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ardistill.core.choosers import RowMultinomialChooser, make_chooser
from ardistill.core.seeds import choice_seeds, sample_labels, sample_noise
from ardistill.sampling.baselines import sample_onestep, sample_skip, token_marginals
from ardistill.sampling.methods import sample_dd, sample_teacher, sample_teacher_involved
from ardistill.student.procedure import few_step, nearest_codes, step
from ardistill.teachers.base import Condition, greedy_chooser

SPECS = ["tiny-llamagen", "tiny-var"]


def _inputs(teacher, index, seed=0):
    index = np.asarray(index, dtype=np.int64)
    noise = sample_noise(seed, index, teacher.layout.num_positions, teacher.codebook_dim)
    labels = sample_labels(seed, index, "balanced", list(range(teacher.num_classes)))
    return noise, Condition(labels=labels), choice_seeds(seed, index)


@pytest.mark.parametrize("spec", SPECS)
def test_dd_is_few_step_and_tokens_are_nearest_codes(spec, tiny, student):
    t, s = tiny(spec), student(spec)
    noise, cond, _ = _inputs(t, range(4))
    cb = t.dd_codebook()
    out = sample_dd(s, noise, cond, (0, 2), 2, cb)
    ref = few_step(s, noise, cond, [0, 2], 2, cb)
    assert torch.equal(out.latents, ref)
    assert torch.equal(out.tokens, nearest_codes(ref, cb))


def _greedy_by_teacher_forcing(teacher, prefix, cond, n, m):
    """Greedy AR decoding of steps n..m-1 written with `guided_probs` (no session, no cache)."""
    lay = teacher.layout
    tokens = torch.zeros(len(cond), lay.num_positions, dtype=torch.long)
    tokens[:, : lay.begin(n)] = prefix
    for s in range(n, m):
        probs = teacher.guided_probs(tokens, cond, teacher.default_sampling)
        tokens[:, lay.step_slice(s)] = probs[:, lay.step_slice(s)].argmax(-1)
    return tokens[:, : lay.begin(m)]


@pytest.mark.parametrize("spec", SPECS)
def test_teacher_involved_greedy_matches_a_direct_procedure(spec, tiny, student):
    t, s = tiny(spec), student(spec)
    noise, cond, _ = _inputs(t, range(3))
    cb = t.dd_codebook()
    n, m, split = 1, 3, 2
    got = sample_teacher_involved(s, t, noise, cond, n, m, split, cb, greedy_chooser)
    x1 = step(s, noise, noise, cond, 0, split, cb)
    prefix = nearest_codes(x1, cb)[:, : t.layout.begin(n)]
    tokens = _greedy_by_teacher_forcing(t, prefix, cond, n, m)
    x = torch.cat([cb[tokens], noise[:, tokens.shape[1]:]], dim=1)
    want = step(s, x, noise, cond, m, split, cb)
    assert torch.allclose(got.latents, want, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_teacher_involved_flow_is_a_function_of_the_noise(spec, tiny, student):
    t, s = tiny(spec), student(spec)
    cb = t.dd_codebook()
    outs = []
    for index in ([0, 1, 2, 3], [2, 3]):
        noise, cond, _ = _inputs(t, index)
        choose = make_chooser("flow", noise=noise, layout=t.layout, codebook=cb)
        outs.append(sample_teacher_involved(s, t, noise, cond, 1, 3, 2, cb, choose).tokens)
    assert torch.equal(outs[0][2:], outs[1])
    other_noise, cond, _ = _inputs(t, [0, 1, 2, 3], seed=5)
    cond = Condition(labels=sample_labels(0, np.arange(4), "balanced", list(range(10))))
    choose = make_chooser("flow", noise=other_noise, layout=t.layout, codebook=cb)
    moved = sample_teacher_involved(s, t, other_noise, cond, 1, 3, 2, cb, choose).tokens
    assert not torch.equal(moved, outs[0])


@pytest.mark.parametrize("spec", SPECS)
def test_multinomial_teacher_depends_on_seed_and_index_only(spec, tiny):
    t = tiny(spec)
    _, cond4, seeds4 = _inputs(t, range(4))
    _, cond2, seeds2 = _inputs(t, [2, 3])
    a = sample_teacher(t, cond4, RowMultinomialChooser(seeds4.tolist()))
    b = sample_teacher(t, cond2, RowMultinomialChooser(seeds2.tolist()))
    assert torch.equal(a[2:], b)
    _, _, other = _inputs(t, range(4), seed=1)
    c = sample_teacher(t, cond4, RowMultinomialChooser(other.tolist()))
    assert not torch.equal(a, c)


def test_token_marginals_are_frequencies():
    tokens = torch.tensor([[0, 1, 2], [0, 2, 2], [1, 2, 2], [0, 1, 0]])
    p = token_marginals(tokens, 3)
    want = torch.tensor([[3, 1, 0], [0, 2, 2], [1, 0, 3]], dtype=torch.float32) / 4
    assert torch.allclose(p, want)
    with pytest.raises(ValueError, match="outside"):
        token_marginals(tokens, 2)


@pytest.mark.parametrize("spec", SPECS)
def test_onestep_draws_each_position_from_its_marginal(spec, tiny):
    t = tiny(spec)
    lay, v = t.layout, t.vocab_size
    g = torch.Generator().manual_seed(0)
    known = torch.randint(0, 4, (50, lay.num_positions), generator=g)
    known[:, 0] = 3  # a position with a one-point marginal
    marg = token_marginals(known, v)
    b = 400
    noise = torch.randn(b, lay.num_positions, t.codebook_dim, generator=g)
    choose = make_chooser("flow", noise=noise, layout=lay, codebook=t.dd_codebook())
    out = sample_onestep(marg, lay, b, choose)
    assert out.shape == (b, lay.num_positions)
    assert bool((out[:, 0] == 3).all()) and int(out.max()) < 4
    freq = token_marginals(out, v)
    assert float((freq - marg).abs().max()) < 0.15  # 400 draws: ~4 standard errors
    greedy = sample_onestep(marg, lay, 2, greedy_chooser)
    assert torch.equal(greedy[0], marg.argmax(-1))


@pytest.mark.parametrize("spec", SPECS)
def test_skip_fills_the_skipped_positions_from_the_last_computed_step(spec, tiny):
    t = tiny(spec)
    lay = t.layout
    _, cond, _ = _inputs(t, range(3))
    k = 2
    full = sample_teacher(t, cond, greedy_chooser)
    got = sample_skip(t, cond, k, greedy_chooser)
    last = lay.num_steps - k - 1
    done = lay.begin(last + 1)
    assert torch.equal(got[:, :done], full[:, :done])
    for s in range(last + 1, lay.num_steps):
        fill = got[:, lay.step_slice(s)]
        if lay.kind == "raster":  # every skipped token = the last computed token's argmax
            assert torch.equal(fill, got[:, done - 1 : done].expand_as(fill))
        else:  # the last computed scale's argmax grid, nearest-upsampled
            p0, p1 = lay.patch_nums[last], lay.patch_nums[s]
            grid = got[:, lay.step_slice(last)].view(-1, p0, p0)
            idx = torch.arange(p1) * p0 // p1
            assert torch.equal(fill, grid[:, idx][:, :, idx].reshape(-1, p1 * p1))
    with pytest.raises(ValueError, match="skip must be"):
        sample_skip(t, cond, lay.num_steps, greedy_chooser)


def test_flow_dd_choice_keeps_the_students_distribution():
    """The "flow" DD choice maps each position's input noise through the flow map of the
    student's softmax: token frequencies over many noises follow that distribution, a
    confident student gets its argmax, and the choice is a function of the noise alone."""
    from ardistill.sampling.methods import dd_token_choice

    g = torch.Generator().manual_seed(0)
    V, d, n = 16, 4, 20000
    cb = torch.nn.functional.normalize(torch.randn(V, d, generator=g), dim=-1)
    choose = dd_token_choice("flow", cb)
    logits = torch.zeros(1, n, V)
    logits[..., 3], logits[..., 7], logits[..., 11] = 2.0, 1.0, 0.5
    noise = torch.randn(1, n, d, generator=g)
    tokens = choose(logits, noise)
    want = torch.softmax(logits[0, 0], -1)
    freq = torch.bincount(tokens[0], minlength=V).double() / n
    assert (freq - want.double()).abs().max() < 4 * (0.25 / n) ** 0.5  # 4 sigma
    assert torch.equal(choose(logits, noise), tokens)  # deterministic in the noise
    assert torch.equal(choose(logits[:, :50], noise[:, :50]), tokens[:, :50])  # per position
    sure = torch.full((1, 50, V), -30.0)
    sure[0, torch.arange(50), torch.arange(50) % V] = 30.0
    assert torch.equal(choose(sure, noise[:, :50]), sure.argmax(-1))
    assert dd_token_choice("argmax", cb)(logits, noise).eq(3).all()
    with pytest.raises(ValueError, match="DD choice"):
        dd_token_choice("nucleus", cb)
    # temperature T: the flow map over softmax(logits / T); frequencies follow it, and a
    # small T is the argmax
    half = dd_token_choice("flow", cb, temperature=0.5)(logits, noise)
    freq = torch.bincount(half[0], minlength=V).double() / n
    want = torch.softmax(logits[0, 0] / 0.5, -1).double()
    assert (freq - want).abs().max() < 4 * (0.25 / n) ** 0.5
    assert dd_token_choice("flow", cb, temperature=0.02)(logits, noise).eq(3).all()
    with pytest.raises(ValueError, match="temperature"):
        dd_token_choice("flow", cb, temperature=0.0)


@pytest.mark.parametrize("spec", SPECS)
def test_flow_dd_choice_runs_both_families(spec, tiny, student):
    from ardistill.sampling.methods import dd_token_choice

    t, s = tiny(spec), student(spec)
    noise, cond, _ = _inputs(t, range(4))
    cb = t.dd_codebook()
    split = t.layout.num_steps  # the logits head everywhere
    a = sample_dd(s, noise, cond, (0,), split, cb, dd_token_choice("flow", cb))
    b = sample_dd(s, noise[:2], cond[:2], (0,), split, cb, dd_token_choice("flow", cb))
    assert torch.equal(a.tokens[:2], b.tokens)
    assert torch.equal(a.latents, cb[a.tokens])  # every position snapped to a codeword


def test_flow_dd_choice_uses_the_cheaper_choice_solver():
    """The DD choice runs `choice_solver_config` (fewer steps, a 5-nat certificate), not pair
    generation's exact solver: the same map up to a few percent of hard rows (measured
    98.4% on this synthetic problem, 99.2-99.8% on the shipped students' inputs), never a
    zero-probability token, at a fraction of the evaluations."""
    from ardistill.core.choosers import choice_solver_config, solver_config
    from ardistill.flow.reference import make_flow_problem
    from ardistill.flow.solver import FlowMap
    from ardistill.sampling.methods import dd_token_choice

    noise, probs, cb = make_flow_problem("var", 256, 1.0, 5)
    logits = probs.log()  # log 0 = -inf: the choice's softmax keeps the zeros
    probs = torch.softmax(logits, -1)
    chosen = dd_token_choice("flow", cb)(logits[None], noise[None])[0]
    fast = FlowMap(cb, choice_solver_config(None)).solve(noise, probs)
    exact = FlowMap(cb, solver_config(None)).solve(noise, probs)
    assert torch.equal(chosen, fast.tokens)
    agree = (fast.tokens == exact.tokens).double().mean()
    assert 0.97 <= agree < 1.0, agree
    assert bool((probs.gather(1, chosen[:, None]) > 0).all())
    evals = (fast.full_evals + fast.pruned_evals).double().mean()
    assert evals < 0.6 * (exact.full_evals + exact.pruned_evals).double().mean()
    assert choice_solver_config(7).num_steps == 7
    with pytest.raises(ValueError, match="flow_steps"):
        choice_solver_config(0)
