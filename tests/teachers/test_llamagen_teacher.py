"""LlamaGen teacher behaviour on tiny real models (configs from the oracle's config.json):
KV-cache sessions == teacher forcing, determinism, bf16, compile, packing, training hooks."""

from __future__ import annotations

import json

import pytest
import torch

from ardistill.teachers.base import (
    Condition,
    MultinomialChooser,
    SamplingConfig,
    Teacher,
    decode,
    greedy_chooser,
)
from ardistill.teachers.fast_linear import set_cpu_packing
from ardistill.teachers.filtering import filtered_probs
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import random_gpt, random_vq
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher


@pytest.fixture(scope="module")
def cfgs(oracle):
    c = json.loads((oracle / "llamagen" / "config.json").read_text())
    vq = VQConfig.from_official(c["vq"]["model_args"], c["vq"]["encoder_decoder_override"])
    return {
        "c2i": GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"]),
        "t2i": GPTConfig.from_official(c["t2i_teacher"]["model_args_resolved"]),
        "vq": vq,
    }


def make_teacher(cfgs, kind: str, seed: int = 0, dtype=torch.float32) -> LlamaGenTeacher:
    gen = torch.Generator().manual_seed(seed)
    gpt = random_gpt(cfgs[kind], generator=gen, dtype=dtype)
    with torch.no_grad():  # larger weights: peaked, informative distributions
        gpt.output.weight.mul_(40.0)
    vq = random_vq(cfgs["vq"], generator=gen)
    return LlamaGenTeacher(f"tiny-{kind}", gpt, vq, SamplingConfig(cfg_scale=2.0))


@pytest.fixture(scope="module")
def c2i(cfgs):
    return make_teacher(cfgs, "c2i")


@pytest.fixture(scope="module")
def t2i(cfgs):
    return make_teacher(cfgs, "t2i")


def caption_cond(cfg: GPTConfig, valid: list[int], seed: int = 0) -> Condition:
    g = torch.Generator().manual_seed(seed)
    t = cfg.cls_token_num
    mask = torch.zeros(len(valid), t, dtype=torch.bool)
    for i, n in enumerate(valid):
        mask[i, t - n :] = True  # left-padded: valid tokens at the end
    cap = torch.randn(len(valid), t, cfg.caption_dim, generator=g) * mask[..., None]
    return Condition(caption=cap, caption_mask=mask)


def run_session(teacher, cond, sampling, seed=0, prefix=None, **opts):
    """Sample with a multinomial chooser; return tokens and the per-step probabilities."""
    session = teacher.start(cond, sampling, prefix=prefix, **opts)
    choose = MultinomialChooser(torch.Generator().manual_seed(seed))
    toks = [] if prefix is None else [prefix]
    probs = []
    while session.step < teacher.layout.num_steps:
        p = session.next_probs()
        probs.append(p)
        t = choose(session.step, p)
        session.push(t)
        toks.append(t)
    return torch.cat(toks, 1), torch.cat(probs, 1)


SAMPLINGS = [
    SamplingConfig(cfg_scale=2.0, top_k=50),
    SamplingConfig(cfg_scale=3.0, temperature=0.8, top_k=100, top_p=0.9, cfg_interval=10),
    SamplingConfig(cfg_scale=1.0, top_p=0.95),
]


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["cfg", "cfg-interval", "no-cfg"])
def test_c2i_session_equals_teacher_forcing(c2i, sampling):
    cond = Condition(labels=torch.tensor([3, 999, 0]))
    tokens, probs = run_session(c2i, cond, sampling)
    assert isinstance(c2i, Teacher)
    assert tokens.shape == (3, c2i.layout.num_positions) and tokens.dtype == torch.int64
    ref = c2i.guided_probs(tokens, cond, sampling)
    torch.testing.assert_close(probs, ref, atol=2e-5, rtol=0)
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


def test_t2i_session_equals_teacher_forcing(t2i, cfgs):
    cond = caption_cond(cfgs["t2i"], [5, 120])
    sampling = SamplingConfig(cfg_scale=4.0, top_k=64)
    tokens, probs = run_session(t2i, cond, sampling)
    torch.testing.assert_close(probs, t2i.guided_probs(tokens, cond, sampling), atol=2e-5, rtol=0)


def test_t2i_ignores_padded_caption_rows(t2i, cfgs):
    cond = caption_cond(cfgs["t2i"], [7, 30])
    noisy = Condition(caption=cond.caption + (~cond.caption_mask)[..., None] * 5.0,
                      caption_mask=cond.caption_mask)
    tokens = torch.randint(0, t2i.vocab_size, (2, t2i.layout.num_positions),
                           generator=torch.Generator().manual_seed(1))
    s = SamplingConfig(cfg_scale=3.0)
    torch.testing.assert_close(t2i.guided_logits(tokens, noisy, s),
                               t2i.guided_logits(tokens, cond, s), atol=1e-4, rtol=0)


def test_prefix_session_continues_like_teacher_forcing(c2i):
    cond = Condition(labels=torch.tensor([5, 6]))
    s = SamplingConfig(cfg_scale=2.0, top_k=80)
    full, _ = run_session(c2i, cond, s, seed=3)
    k = 17
    tokens, probs = run_session(c2i, cond, s, seed=4, prefix=full[:, :k])
    assert torch.equal(tokens[:, :k], full[:, :k])
    ref = c2i.guided_probs(tokens, cond, s)[:, k:]
    torch.testing.assert_close(probs, ref, atol=2e-5, rtol=0)


def test_sampling_is_deterministic_given_a_generator(c2i):
    cond = Condition(labels=torch.tensor([1, 2]))
    s = SamplingConfig(cfg_scale=2.0, top_k=100)
    a = decode(c2i, cond, s, MultinomialChooser(torch.Generator().manual_seed(7)))
    b = decode(c2i, cond, s, MultinomialChooser(torch.Generator().manual_seed(7)))
    c = decode(c2i, cond, s, MultinomialChooser(torch.Generator().manual_seed(8)))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_finished_sessions_hand_their_cache_to_the_next(cfgs):
    """The teacher's KV cache pool: the next session of the same shape reuses the cache a
    finished one left (stale values and all) and samples exactly what a fresh cache gives;
    another shape, or an unfinished session, gets a new one."""
    t = make_teacher(cfgs, "c2i")
    cond = Condition(labels=torch.tensor([1, 2]))
    s = SamplingConfig(cfg_scale=2.0, top_k=100)
    t.kv_pool.clear()
    fresh = decode(t, cond, s, MultinomialChooser(torch.Generator().manual_seed(7)))
    kept = t.kv_pool._kept[1]
    assert bool(kept.k.abs().sum() > 0)  # the finished session's values
    again = t.start(cond, s)
    assert again.cache is kept and t.kv_pool._kept is None
    prefix = torch.randint(0, t.vocab_size, (2, 5), generator=torch.Generator().manual_seed(1))
    with_prefix = decode(t, cond, s, MultinomialChooser(torch.Generator().manual_seed(7)),
                         prefix=prefix)
    assert t.kv_pool._kept[1] is not kept  # a second cache
    t.kv_pool.clear()
    assert torch.equal(with_prefix, decode(
        t, cond, s, MultinomialChooser(torch.Generator().manual_seed(7)), prefix=prefix))
    t.start(cond, s)  # unfinished: its cache stays with it
    assert torch.equal(fresh, decode(t, cond, s,
                                     MultinomialChooser(torch.Generator().manual_seed(7))))
    reused = decode(t, cond, s, MultinomialChooser(torch.Generator().manual_seed(7)))
    assert torch.equal(reused, fresh)  # on the pooled (stale) cache: the same tokens
    # eager sessions read the positions they wrote only: a cache full of NaN changes nothing
    pooled = t.kv_pool._kept[1]
    pooled.k.fill_(float("nan"))
    pooled.v.fill_(float("nan"))
    assert torch.equal(fresh, decode(t, cond, s,
                                     MultinomialChooser(torch.Generator().manual_seed(7))))
    pooled = t.kv_pool._kept[1]
    other = t.start(Condition(labels=torch.tensor([1, 2, 3])), s)
    assert other.cache.k.shape[1] == 6 and other.cache is not pooled


def test_packed_cpu_linear_matches_plain(cfgs):
    t = make_teacher(cfgs, "c2i")
    tokens = torch.randint(0, t.vocab_size, (2, t.layout.num_positions),
                           generator=torch.Generator().manual_seed(0))
    cond = Condition(labels=torch.tensor([4, 9]))
    assert set_cpu_packing(t.gpt, True)
    packed = t.forward_logits(tokens, cond)
    set_cpu_packing(t.gpt, False)
    plain = t.forward_logits(tokens, cond)
    torch.testing.assert_close(packed, plain, atol=1e-4, rtol=0)
    with torch.no_grad():  # a weight update invalidates the packed copy
        t.gpt.output.weight.mul_(0.5)
    set_cpu_packing(t.gpt, True)
    torch.testing.assert_close(t.forward_logits(tokens, cond), plain * 0.5, atol=1e-4, rtol=0)
    with torch.inference_mode():  # inference tensors (no version counter) work too
        t.gpt.output.weight = torch.nn.Parameter(t.gpt.output.weight * 2.0)
        assert t.gpt.output.weight.is_inference()
        torch.testing.assert_close(t.forward_logits(tokens, cond), plain, atol=1e-4, rtol=0)


def test_bf16_teacher_runs_and_tracks_fp32(cfgs):
    t32 = make_teacher(cfgs, "c2i")
    t16 = make_teacher(cfgs, "c2i", dtype=torch.bfloat16)
    assert t16.dtype == torch.bfloat16
    cond = Condition(labels=torch.tensor([0, 1]))
    tokens = decode(t16, cond, SamplingConfig(cfg_scale=2.0), greedy_chooser)
    assert tokens.shape == (2, t16.layout.num_positions)
    l16, l32 = t16.forward_logits(tokens, cond), t32.forward_logits(tokens, cond)
    assert l16.dtype == torch.float32
    assert (l16 - l32).abs().max() < 0.05 * l32.abs().max()
    assert t16.decode_tokens(tokens).dtype == torch.float32


@pytest.mark.slow
def test_compiled_session_equals_eager(c2i):
    cond = Condition(labels=torch.tensor([3, 4]))
    s = SamplingConfig(cfg_scale=2.0, top_k=50, cfg_interval=20)
    eager, pe = run_session(c2i, cond, s, seed=2)
    comp, pc = run_session(c2i, cond, s, seed=2, compile=True)
    assert torch.equal(eager, comp)
    torch.testing.assert_close(pc, pe, atol=2e-5, rtol=0)


def test_decode_latents_and_encode(c2i):
    tokens = torch.randint(0, c2i.vocab_size, (2, c2i.layout.num_positions),
                           generator=torch.Generator().manual_seed(0))
    img = c2i.decode_tokens(tokens)
    assert img.shape == (2, 3, c2i.image_size, c2i.image_size)
    torch.testing.assert_close(c2i.decode_latents(c2i.dd_codebook()[tokens]), img,
                               atol=1e-5, rtol=0)
    cb = c2i.dd_codebook()
    assert cb.shape == (c2i.vocab_size, c2i.codebook_dim)
    torch.testing.assert_close(cb.norm(dim=-1), torch.ones(c2i.vocab_size))
    codes = c2i.encode_images(img.clamp(-1, 1))
    assert codes.shape == tokens.shape and codes.dtype == torch.int64


def test_sample_conditions_and_condition_errors(c2i, t2i, cfgs):
    cond = c2i.sample_conditions(64, torch.Generator().manual_seed(0))
    assert cond.labels.shape == (64,) and 0 <= cond.labels.min()
    assert cond.labels.max() < c2i.num_classes
    with pytest.raises(ValueError, match="text-conditional"):
        t2i.sample_conditions(2, torch.Generator())
    with pytest.raises(ValueError, match="text-conditional"):
        t2i.start(Condition(labels=torch.tensor([1])), SamplingConfig())
    with pytest.raises(ValueError, match="class-conditional"):
        c2i.start(caption_cond(cfgs["t2i"], [3]), SamplingConfig())
    with pytest.raises(ValueError, match="labels must be in"):
        c2i.start(Condition(labels=torch.tensor([c2i.num_classes + 1])), SamplingConfig())
    with pytest.raises(ValueError, match="top_p"):
        c2i.start(Condition(labels=torch.tensor([1])), SamplingConfig(top_p=0.0))


def test_session_errors(c2i):
    s = c2i.start(Condition(labels=torch.tensor([1, 2])), SamplingConfig(cfg_scale=2.0))
    with pytest.raises(ValueError, match="shape"):
        s.push(torch.zeros(3, 1, dtype=torch.long))
    for _ in range(c2i.layout.num_steps):
        s.push(s.next_probs().argmax(-1))
    with pytest.raises(RuntimeError, match="finished"):
        s.next_probs()
    full = torch.zeros(2, c2i.layout.num_positions, dtype=torch.long)
    with pytest.raises(ValueError, match="prefix"):
        c2i.start(Condition(labels=torch.tensor([1, 2])), SamplingConfig(), prefix=full)


def test_filtering_keeps_top_k_ties_and_hf_top_p():
    logits = torch.tensor([[3.0, 2.0, 2.0, 1.0, 0.0]])
    p = filtered_probs(logits, 1.0, top_k=2, top_p=1.0)
    assert (p[0] > 0).tolist() == [True, True, True, False, False]  # tie at the 2nd kept
    # top-p: cumulative softmax [0.64, 0.87, ...] > 0.5 from the first; shifted: keep 1 token
    p = filtered_probs(logits, 1.0, top_k=0, top_p=0.5)
    assert (p[0] > 0).tolist() == [True, False, False, False, False]
    p = filtered_probs(logits, 1.0, top_k=0, top_p=0.7)
    assert (p[0] > 0).sum() == 2  # the token crossing the threshold is kept
    torch.testing.assert_close(filtered_probs(logits, 0.5, 0, 1.0), torch.softmax(logits / 0.5, -1))


def test_gpt_and_vq_train(cfgs):
    gen = torch.Generator().manual_seed(0)
    gpt = random_gpt(cfgs["c2i"], generator=gen).train()
    vq = random_vq(cfgs["vq"], generator=gen).train()
    img = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    rec, q = vq(img)
    assert rec.shape == img.shape and q.indices.shape == (2, 8, 8)
    assert q.codebook_loss > 0 and q.commit_loss > 0
    (rec - img).pow(2).mean().add(q.loss).backward()
    assert vq.encoder.conv_in.weight.grad is not None  # straight-through reaches the encoder
    assert vq.quantize.embedding.weight.grad.abs().sum() > 0
    assert (vq.quantize.codebook_used[-128:] == q.indices.reshape(-1).float()).all()
    tokens = q.indices.reshape(2, -1)
    labels = torch.tensor([1, 2])
    drop = torch.tensor([True, False])
    logits = gpt(tokens[:, :-1], labels, cond_drop=drop)
    assert logits.shape == (2, 64, cfgs["c2i"].vocab_size)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    assert gpt.cls_embedding.embedding_table.weight.grad[cfgs["c2i"].num_classes].abs().sum() > 0
    vq.eval()
    with torch.no_grad():
        assert vq.encode(img).loss == 0
