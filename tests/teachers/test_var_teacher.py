"""The VAR teacher on a tiny real model: KV-cache session vs teacher forcing, prefixes (correct
and the official quirk), determinism, decoding, bf16, torch.compile, and input validation."""

from __future__ import annotations

import pytest
import torch

from ardistill.teachers.base import (
    Condition,
    DecodeSession,
    MultinomialChooser,
    Teacher,
    decode,
    greedy_chooser,
)
from ardistill.teachers.var.quant import phi_indices
from ardistill.teachers.var.sampling import filter_logits
from ardistill.teachers.var.tiny import tiny_teacher

B = 3


@pytest.fixture(scope="module")
def teacher():
    return tiny_teacher(seed=0)


@pytest.fixture(scope="module")
def cond():
    return Condition(labels=torch.tensor([0, 7, 3]))


def _tokens(teacher, seed=1, n=B):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, teacher.vocab_size, (n, teacher.layout.num_positions), generator=g)


def _session_logits(teacher, cond, sampling, tokens, prefix_steps=0, **options):
    """Push `tokens` scale by scale; return the session's guided logits for every scale."""
    lay = teacher.layout
    prefix = tokens[:, : lay.begin(prefix_steps)] if prefix_steps else None
    s = teacher.start(cond, sampling, prefix=prefix, **options)
    out = []
    while s.step < lay.num_steps:
        out.append(s.next_logits())
        s.push(tokens[:, lay.step_slice(s.step)])
    return torch.cat(out, dim=1)


def test_protocol(teacher):
    assert isinstance(teacher, Teacher)
    s = teacher.start(Condition(labels=torch.tensor([1])), teacher.default_sampling)
    assert isinstance(s, DecodeSession)
    assert teacher.dd_codebook().shape == (teacher.vocab_size, teacher.codebook_dim)
    assert teacher.layout.num_positions == 30 and teacher.layout.num_steps == 4


@pytest.mark.parametrize("cfg_scale", [0.0, 2.0])
def test_kv_cache_session_equals_teacher_forcing(teacher, cond, cfg_scale):
    sampling = teacher.default_sampling.replace(cfg_scale=cfg_scale)
    tokens = _tokens(teacher)
    tf = teacher.guided_logits(tokens, cond, sampling)
    kv = _session_logits(teacher, cond, sampling, tokens)
    assert tf.shape == kv.shape == (B, 30, teacher.vocab_size)
    assert tf.std() > 0.5  # informative logits, so the comparison can fail
    torch.testing.assert_close(kv, tf, atol=1e-4, rtol=0)
    # probabilities too, on rows whose filter decisions are not within float noise
    pt = teacher.guided_probs(tokens, cond, sampling)
    s = teacher.start(cond, sampling)
    for step in range(teacher.layout.num_steps):
        sl = teacher.layout.step_slice(step)
        torch.testing.assert_close(s.next_probs(), pt[:, sl], atol=1e-4, rtol=0)
        s.push(tokens[:, sl])


def test_guidance_ramp_is_zero_at_first_scale_and_grows(teacher, cond):
    tokens = _tokens(teacher)
    s0 = teacher.default_sampling.replace(cfg_scale=0.0)
    s2 = teacher.default_sampling.replace(cfg_scale=2.0)
    plain, guided = teacher.guided_logits(tokens, cond, s0), teacher.guided_logits(tokens, cond, s2)
    null = teacher.forward_logits(tokens, Condition(labels=torch.full((B,), 10)))
    for si in range(teacher.layout.num_steps):
        sl = teacher.layout.step_slice(si)
        w = 2.0 * si / 3
        torch.testing.assert_close(guided[:, sl], (1 + w) * plain[:, sl] - w * null[:, sl],
                                   atol=1e-4, rtol=0)
    torch.testing.assert_close(guided[:, :1], plain[:, :1], atol=1e-5, rtol=0)  # w = 0


def test_correct_prefix_equals_teacher_forcing_and_quirk_differs(teacher, cond):
    sampling = teacher.default_sampling
    tokens = _tokens(teacher, seed=2)
    tf = teacher.guided_logits(tokens, cond, sampling)
    lay = teacher.layout
    for k in (1, 2, 3):
        ok = _session_logits(teacher, cond, sampling, tokens, prefix_steps=k)
        torch.testing.assert_close(ok, tf[:, lay.begin(k):], atol=1e-4, rtol=0)
    quirk = _session_logits(teacher, cond, sampling, tokens, prefix_steps=2,
                            official_prefix_quirk=True)
    assert (quirk - tf[:, lay.begin(2):]).abs().max() > 0.1
    # without a prefix the option changes nothing
    q0 = _session_logits(teacher, cond, sampling, tokens, official_prefix_quirk=True)
    torch.testing.assert_close(q0, tf, atol=1e-4, rtol=0)


def test_full_prefix_finishes_session(teacher, cond):
    tokens = _tokens(teacher)
    s = teacher.start(cond, teacher.default_sampling, prefix=tokens)
    assert s.step == teacher.layout.num_steps
    torch.testing.assert_close(teacher.decode_fhat(s.f_hat), teacher.decode_tokens(tokens))
    with pytest.raises(ValueError, match="finished"):
        s.next_probs()


def test_decode_is_deterministic_given_a_generator(teacher, cond):
    sampling = teacher.default_sampling
    run = lambda seed: decode(teacher, cond, sampling, MultinomialChooser(
        torch.Generator().manual_seed(seed)))
    a, b, c = run(5), run(5), run(6)
    assert a.dtype == torch.int64 and a.shape == (B, 30)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_finished_sessions_hand_their_caches_to_the_next(teacher, cond):
    s = teacher.default_sampling
    teacher.kv_pool.clear()
    a = decode(teacher, cond, s, MultinomialChooser(torch.Generator().manual_seed(3)))
    kept = teacher.kv_pool._kept[1]
    b = decode(teacher, cond, s, MultinomialChooser(torch.Generator().manual_seed(3)))
    assert teacher.kv_pool._kept[1] is kept  # the same caches, taken and given back
    assert torch.equal(a, b)  # stale keys and values are never read
    teacher.kv_pool.clear()


def test_sampled_tokens_stay_in_the_filtered_support(teacher, cond):
    sampling = teacher.default_sampling.replace(top_k=4, top_p=0.0)
    tokens = decode(teacher, cond, sampling, MultinomialChooser(torch.Generator().manual_seed(0)))
    probs = teacher.guided_probs(tokens, cond, sampling)
    assert ((probs > 0).sum(-1) <= 4).all()
    assert (probs.gather(-1, tokens[..., None]) > 0).all()


def test_greedy_decode_matches_argmax_of_teacher_forcing(teacher, cond):
    sampling = teacher.default_sampling.replace(top_k=1)
    tokens = decode(teacher, cond, sampling, greedy_chooser)
    tf = teacher.guided_logits(tokens, cond, sampling)
    assert torch.equal(tf.argmax(-1), tokens)


def test_decode_latents_equals_decode_tokens(teacher):
    tokens = _tokens(teacher)
    img = teacher.decode_tokens(tokens)
    assert img.shape == (B, 3, teacher.image_size, teacher.image_size)
    assert img.min() >= -1 and img.max() <= 1 and img.std() > 0.05
    torch.testing.assert_close(teacher.decode_latents(teacher.dd_codebook()[tokens]), img,
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="latents"):
        teacher.decode_latents(torch.zeros(B, 29, teacher.codebook_dim))


def test_encode_images_roundtrip_indices(teacher):
    img = teacher.decode_tokens(_tokens(teacher))
    idx = teacher.encode_images(img)
    assert idx.shape == (B, 30) and idx.dtype == torch.int64
    assert 0 <= idx.min() and idx.max() < teacher.vocab_size
    # the first scale quantises the mean feature: it is the nearest codeword to it
    f = teacher.vqvae.encode_features(img)
    d = torch.cdist(f.mean((2, 3)), teacher.dd_codebook())
    assert torch.equal(idx[:, 0], d.argmin(-1))
    with pytest.raises(ValueError, match="images"):
        teacher.encode_images(torch.zeros(B, 3, 9, 9))


def test_sample_conditions_uniform_and_seeded(teacher):
    a = teacher.sample_conditions(500, torch.Generator().manual_seed(0)).labels
    b = teacher.sample_conditions(500, torch.Generator().manual_seed(0)).labels
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() < teacher.num_classes
    assert len(a.unique()) == teacher.num_classes


def test_bf16_path_runs():
    t = tiny_teacher(seed=0, dtype=torch.bfloat16)
    cond = Condition(labels=torch.tensor([1, 2]))
    s = t.start(cond, t.default_sampling)
    p = s.next_probs()
    assert p.dtype == torch.float32
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 1))
    tokens = decode(t, cond, t.default_sampling, MultinomialChooser(torch.Generator()))
    assert tokens.shape == (2, 30) and tokens.max() < t.vocab_size
    ref = tiny_teacher(seed=0)  # same weights in float32: logits agree to bf16 precision
    diff = t.forward_logits(tokens, cond) - ref.forward_logits(tokens, cond)
    assert diff.abs().mean() < 0.1


@pytest.mark.slow
def test_compiled_session_matches_eager(teacher, cond):
    tokens = _tokens(teacher)
    eager = _session_logits(teacher, cond, teacher.default_sampling, tokens)
    compiled = tiny_teacher(seed=0)
    compiled.set_compile(True)
    got = _session_logits(compiled, cond, compiled.default_sampling, tokens)
    torch.testing.assert_close(got, eager, atol=1e-4, rtol=0)


def test_bad_inputs_raise_clear_errors(teacher, cond):
    s = teacher.default_sampling
    with pytest.raises(ValueError, match="unknown VAR start options"):
        teacher.start(cond, s, official_prefix=True)
    with pytest.raises(ValueError, match="labels"):
        teacher.start(Condition(labels=torch.tensor([11])), s)
    with pytest.raises(ValueError, match="class-conditional"):
        teacher.start(Condition(caption=torch.zeros(1, 2, 4),
                                caption_mask=torch.ones(1, 2, dtype=torch.bool)), s)
    with pytest.raises(ValueError, match="whole scales"):
        teacher.start(cond, s, prefix=torch.zeros(B, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="top_k"):
        teacher.start(cond, s.replace(top_k=teacher.vocab_size + 1))
    with pytest.raises(ValueError, match="shape"):
        teacher.start(cond, s).push(torch.zeros(B, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="scale boundary"):
        teacher.forward_logits(torch.zeros(B, 7, dtype=torch.long), cond)


def test_var_top_p_is_ascending_cumsum():
    # probs 0.5, 0.3, 0.15, 0.05: VAR removes tokens whose ascending cumsum <= 1 - top_p.
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: torch.isfinite(filter_logits(logits, 0, p)).tolist()
    assert kept(0.9) == [True, True, True, False]  # cumsum 0.05 <= 0.1 removed
    assert kept(0.8) == [True, True, False, False]  # 0.05, 0.2 <= 0.2 removed (ties removed)
    assert kept(0.01) == [True, False, False, False]  # the largest always survives
    assert kept(0.0) == [True] * 4 and kept(1.0) == [True] * 4
    assert torch.isfinite(filter_logits(logits, 2, 0.0)).tolist() == [True, True, False, False]


def test_phi_selection_reproduces_official_float64_ties():
    # From the official PhiPartiallyShared (numpy float64): s/(K-1) = 2/9 lies exactly between
    # ticks 1/12 and 13/36 for the released 10 scales; the rounding picks Phi 1.
    assert phi_indices(4, 10) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert phi_indices(4, 5) == [0, 1, 2, 2, 3]
    assert phi_indices(3, 10) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert phi_indices(6, 4) == [0, 1, 3, 5]


def test_a_copied_teacher_gets_an_empty_pool_of_its_own(teacher, cond):
    import copy
    import pickle

    decode(teacher, cond, teacher.default_sampling,
           MultinomialChooser(torch.Generator().manual_seed(3)))
    assert teacher.kv_pool._kept is not None
    for other in (copy.deepcopy(teacher), pickle.loads(pickle.dumps(teacher))):
        assert other.kv_pool is not teacher.kv_pool and other.kv_pool._kept is None
        assert other.kv_pool.take("k", lambda: 5) == (5, False)
    teacher.kv_pool.clear()
