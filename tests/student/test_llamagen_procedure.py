"""The generic DD procedure (student/procedure.py) on a tiny LlamaGen teacher and student:
the fast `step` equals the official final_predict + final_sequence composition, few-step
checks, and teacher-involved sampling with each kind of chooser."""

from __future__ import annotations

import json

import pytest
import torch

from ardistill.core.choosers import NoiseChooser
from ardistill.student.llamagen import build_student
from ardistill.student.procedure import (
    few_step,
    final_predict,
    final_sequence,
    nearest_codes,
    step,
    teacher_involved,
)
from ardistill.teachers.base import (
    Condition,
    MultinomialChooser,
    SamplingConfig,
    TokenLayout,
    dd_state,
    decode,
    greedy_chooser,
)
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import random_gpt, random_vq
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher

SAMPLING = SamplingConfig(cfg_scale=2.0, top_k=40)


@pytest.fixture(scope="module")
def teacher(oracle):
    c = json.loads((oracle / "llamagen" / "config.json").read_text())
    gen = torch.Generator().manual_seed(0)
    gpt = random_gpt(GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"]),
                     generator=gen)
    with torch.no_grad():
        gpt.output.weight.mul_(40.0)  # peaked distributions
    vcfg = VQConfig.from_official(c["vq"]["model_args"], c["vq"]["encoder_decoder_override"])
    return LlamaGenTeacher("tiny-c2i", gpt, random_vq(vcfg, generator=gen), SAMPLING)


@pytest.fixture(scope="module")
def student(teacher):
    s = build_student(teacher)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # make the DD-only weights matter
        for p in (s.tok_embeddings.weight, s.n_d_embed.weight, s.final_layer_conti.linear.weight):
            p.copy_(torch.randn(p.shape, generator=g))
    return s


@pytest.fixture(scope="module")
def batch(teacher):
    g = torch.Generator().manual_seed(2)
    n, d = teacher.layout.num_positions, teacher.codebook_dim
    return torch.randn(2, n, d, generator=g), Condition(labels=torch.tensor([3, 977]))


def slow_step(student, x, noise, cond, t, split, codebook):
    """The official composition, on the full outputs (oracle README §4.4)."""
    tt = torch.full((x.shape[0],), t, dtype=torch.long)
    x_t = dd_state(student.layout, x, noise, tt)
    with torch.no_grad():
        out = student(x_t, cond, tt)
    return final_sequence(student.layout, final_predict(student.layout, out, x_t, tt, codebook),
                          split, codebook)


@pytest.mark.parametrize("t,split", [(0, 20), (0, 0), (20, 20), (30, 10), (10, 30), (5, 64)])
def test_fast_step_equals_final_predict_composition(student, teacher, batch, t, split):
    noise, cond = batch
    codebook = teacher.dd_codebook()
    g = torch.Generator().manual_seed(5)
    data = torch.randn(noise.shape, generator=g)  # not codewords: snapping matters
    fast = step(student, data, noise, cond, t, split, codebook)
    ref = slow_step(student, data, noise, cond, t, split, codebook)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)
    snapped = codebook[nearest_codes(data[:, : min(t, split)], codebook)]
    torch.testing.assert_close(fast[:, : min(t, split)], snapped, atol=0, rtol=0)


def test_few_step_checks_and_keeps_the_prefix(student, teacher, batch):
    noise, cond = batch
    codebook = teacher.dd_codebook()
    x1, x2 = few_step(student, noise, cond, [0, 20], 20, codebook, return_all=True)
    torch.testing.assert_close(x2[:, :20], x1[:, :20], atol=0, rtol=0)  # snapped prefix kept
    assert torch.equal(x2, few_step(student, noise, cond, [0, 20], 20, codebook))
    for bad in ([], [5], [0, 0], [0, 64]):
        with pytest.raises(ValueError, match="t_list"):
            few_step(student, noise, cond, bad, 20, codebook)


def test_teacher_involved_structure(student, teacher, batch):
    noise, cond = batch
    codebook = teacher.dd_codebook()
    tr = teacher_involved(student, teacher, noise, cond, (0, 30), 12, 40, codebook,
                          greedy_chooser, return_trace=True)
    assert tr.teacher_tokens.shape == (2, 30) and tr.teacher_tokens.dtype == torch.int64
    assert torch.equal(tr.teacher_tokens[:, :12], tr.snapped[:, :12])
    cont = decode(teacher, cond, SAMPLING, greedy_chooser, prefix=tr.snapped[:, :12],
                  end_step=30)
    assert torch.equal(tr.teacher_tokens, cont)  # sampling defaults to the teacher's
    torch.testing.assert_close(tr.x_teacher[:, 30:], noise[:, 30:], atol=0, rtol=0)
    torch.testing.assert_close(tr.x[:, :30], codebook[tr.teacher_tokens], atol=0, rtol=0)
    torch.testing.assert_close(tr.x, slow_step(student, tr.x_teacher, noise, cond, 30, 40,
                                               codebook), atol=1e-5, rtol=0)
    plain = teacher_involved(student, teacher, noise, cond, (0, 30), 12, 40, codebook,
                             greedy_chooser)
    assert torch.equal(plain, tr.x)


def test_teacher_involved_from_scratch_and_to_the_end(student, teacher, batch):
    noise, cond = batch
    codebook = teacher.dd_codebook()
    tr = teacher_involved(student, teacher, noise, cond, (0, 25), 0, 40, codebook,
                          greedy_chooser, return_trace=True)
    assert tr.x_step1 is None and tr.snapped is None  # n = 0 skips the first DD step
    assert torch.equal(tr.teacher_tokens,
                       decode(teacher, cond, SAMPLING, greedy_chooser, end_step=25))
    n = teacher.layout.num_steps
    tr = teacher_involved(student, teacher, noise, cond, (0, n), 50, 20, codebook,
                          greedy_chooser, return_trace=True)
    torch.testing.assert_close(tr.x, codebook[tr.teacher_tokens], atol=0, rtol=0)  # no DD step


def inverse_cdf(noise: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """A deterministic noise -> token map pushing N(0, 1) to probs (a stand-in for the flow
    map): u = Phi(noise[..., 0]), token = first index whose cumulative probability >= u."""
    u = 0.5 * (1 + torch.erf(noise[..., 0] / 2**0.5))
    cdf = probs.double().cumsum(-1)
    return torch.searchsorted(cdf, u.double()[..., None]).squeeze(-1).clamp(max=probs.shape[-1] - 1)


def test_teacher_involved_with_noise_and_multinomial_choosers(student, teacher, batch):
    noise, cond = batch
    codebook = teacher.dd_codebook()

    def run(choose, eps=noise):
        return teacher_involved(student, teacher, eps, cond, (0, 30), 12, 40, codebook, choose,
                                return_trace=True)

    a = run(NoiseChooser(inverse_cdf, noise, teacher.layout))
    b = run(NoiseChooser(inverse_cdf, noise, teacher.layout))
    assert torch.equal(a.x, b.x)  # a deterministic function of the noise
    other = torch.randn(noise.shape, generator=torch.Generator().manual_seed(9))
    c = run(NoiseChooser(inverse_cdf, other, teacher.layout), other)
    assert not torch.equal(a.teacher_tokens[:, 12:], c.teacher_tokens[:, 12:])
    probs = teacher.guided_probs(
        torch.nn.functional.pad(a.teacher_tokens, (0, 64 - 30)), cond, SAMPLING)[:, 12:30]
    picked = probs.gather(-1, a.teacher_tokens[:, 12:, None])
    assert (picked > 0).all()  # every teacher token is inside the top-k support
    m1 = run(MultinomialChooser(torch.Generator().manual_seed(4)))
    m2 = run(MultinomialChooser(torch.Generator().manual_seed(4)))
    assert torch.equal(m1.x, m2.x)


def test_teacher_involved_errors(student, teacher, batch):
    noise, cond = batch
    codebook = teacher.dd_codebook()

    def run(t_list, n):
        return teacher_involved(student, teacher, noise, cond, t_list, n, 40, codebook,
                                greedy_chooser)

    with pytest.raises(ValueError, match=r"t_list must be \(0, m\)"):
        run((5, 30), 12)
    with pytest.raises(ValueError, match=r"t_list must be \(0, m\)"):
        run((0, 20, 30), 12)
    with pytest.raises(ValueError, match="teacher_start < m"):
        run((0, 30), 30)
    with pytest.raises(ValueError, match="teacher_start < m"):
        run((0, 65), 12)
    wrong = TokenLayout.raster(4)
    with pytest.raises(ValueError, match="layout"):
        teacher_involved(student, type("T", (), {"layout": wrong})(), noise, cond, (0, 30), 12,
                         40, codebook, greedy_chooser)


def test_text_conditional_few_step_and_teacher_involved(oracle):
    c = json.loads((oracle / "llamagen" / "config.json").read_text())
    gen = torch.Generator().manual_seed(0)
    gcfg = GPTConfig.from_official(c["t2i_teacher"]["model_args_resolved"])
    vcfg = VQConfig.from_official(c["vq"]["model_args"], c["vq"]["encoder_decoder_override"])
    t2i = LlamaGenTeacher("tiny-t2i", random_gpt(gcfg, generator=gen),
                          random_vq(vcfg, generator=gen), SamplingConfig(cfg_scale=3.0))
    s = build_student(t2i)
    mask = torch.zeros(2, gcfg.cls_token_num, dtype=torch.bool)
    mask[0, -30:], mask[1, -100:] = True, True  # left-padded captions
    cap = torch.randn(2, gcfg.cls_token_num, gcfg.caption_dim, generator=gen) * mask[..., None]
    cond = Condition(caption=cap, caption_mask=mask)
    noise = torch.randn(2, t2i.layout.num_positions, t2i.codebook_dim, generator=gen)
    codebook = t2i.dd_codebook()
    x = few_step(s, noise, cond, [0, 16], 16, codebook)
    assert x.shape == noise.shape and torch.isfinite(x).all()
    tr = teacher_involved(s, t2i, noise, cond, (0, 24), 8, 32, codebook, greedy_chooser,
                          return_trace=True)
    cont = decode(t2i, cond, t2i.default_sampling, greedy_chooser, prefix=tr.snapped[:, :8],
                  end_step=24)
    assert torch.equal(tr.teacher_tokens, cont)
    torch.testing.assert_close(tr.x[:, :24], codebook[tr.teacher_tokens], atol=0, rtol=0)
