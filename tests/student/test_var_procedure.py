"""The generic DD procedure (`student/procedure.py`) with a tiny VAR teacher and its student:
the fast `step` against its definition, few-step prefixes, and teacher-involved sampling
(prefix snapping, the official prefix quirk as an option, t_teacher_start = 0, choosers)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from ardistill.core.choosers import NoiseChooser
from ardistill.student.procedure import (
    few_step,
    final_predict,
    final_sequence,
    nearest_codes,
    step,
    teacher_involved,
)
from ardistill.student.var import VARStudent, build_student
from ardistill.teachers.base import (
    Condition,
    MultinomialChooser,
    SamplingConfig,
    dd_state,
    decode,
    greedy_chooser,
)
from ardistill.teachers.var.tiny import tiny_teacher

GREEDY = SamplingConfig(cfg_scale=2.0, top_k=1)


@pytest.fixture(scope="module")
def teacher():
    return tiny_teacher(1).eval()


@pytest.fixture(scope="module")
def student(teacher) -> VARStudent:
    s = build_student(teacher, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # informative new weights (the official init makes them small)
        g = torch.Generator().manual_seed(5)
        s.n_d_embed.weight.normal_(0, 1.0, generator=g)
        s.final_layer_conti.linear.weight.normal_(0, 0.3, generator=g)
    return s


@pytest.fixture(scope="module")
def data(teacher) -> tuple[Tensor, Condition, Tensor]:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(3, teacher.layout.num_positions, teacher.codebook_dim, generator=g)
    return noise, Condition(labels=torch.tensor([0, 3, 7])), teacher.dd_codebook()


def _slow_step(student, x, noise, cond, t, split, codebook) -> Tensor:
    """The definition: final_sequence(final_predict(student(X_t)), split), full logits."""
    tt = torch.full((x.shape[0],), t, dtype=torch.long)
    x_t = dd_state(student.layout, x, noise, tt)
    with torch.no_grad():
        out = student(x_t, cond, tt)
    fp = final_predict(student.layout, out, x_t, tt, codebook)
    return final_sequence(student.layout, fp, split, codebook)


@pytest.mark.parametrize("t,split", [(0, 0), (0, 2), (0, 4), (1, 3), (2, 2), (3, 1), (2, 4)])
def test_fast_step_equals_its_definition(student, data, t, split):
    noise, cond, codebook = data
    x = codebook[torch.randint(0, len(codebook), noise.shape[:2],
                               generator=torch.Generator().manual_seed(t))]
    with torch.no_grad():
        fast = step(student, x, noise, cond, t, split, codebook)
    torch.testing.assert_close(fast, _slow_step(student, x, noise, cond, t, split, codebook),
                               atol=1e-5, rtol=0)


def test_two_steps_keep_the_first_steps_prefix(student, data):
    noise, cond, codebook = data
    layout, split, t2 = student.layout, 3, 2
    x1, x2 = few_step(student, noise, cond, [0, t2], split, codebook, return_all=True)
    n = layout.begin(t2)  # data at step 2; before begin(split) snapped to the codebook
    assert torch.equal(x2[:, :n], codebook[nearest_codes(x1[:, :n], codebook)])
    assert not torch.equal(x2[:, n:], x1[:, n:])
    with pytest.raises(ValueError, match="start at 0"):
        few_step(student, noise, cond, [1, 2], split, codebook)
    with pytest.raises(ValueError, match="increasing"):
        few_step(student, noise, cond, [0, 2, 2], split, codebook)


def test_teacher_involved_correct_prefix_and_official_quirk(student, teacher, data):
    noise, cond, codebook = data
    layout, n, m, split = teacher.layout, 2, 3, 2
    runs = {q: teacher_involved(student, teacher, noise, cond, (0, m), n, split, codebook,
                                greedy_chooser, GREEDY, return_trace=True,
                                official_prefix_quirk=q) for q in (False, True)}
    ok, quirk = runs[False], runs[True]
    assert torch.equal(ok.x_step1, quirk.x_step1)
    assert torch.equal(ok.snapped, nearest_codes(ok.x_step1, codebook))
    p = layout.begin(n)
    for tr in (ok, quirk):
        assert torch.equal(tr.teacher_tokens[:, :p], tr.snapped[:, :p])  # the snapped prefix
        assert tr.teacher_tokens.shape == (3, layout.begin(m))
        assert torch.equal(tr.x[:, : layout.begin(m)], codebook[tr.teacher_tokens])
        assert torch.equal(tr.x_teacher[:, layout.begin(m):], noise[:, layout.begin(m):])
    # the correct prefix is the teacher's own continuation of those tokens
    ref = decode(teacher, cond, GREEDY, greedy_chooser, prefix=ok.snapped[:, :p], end_step=m)
    assert torch.equal(ok.teacher_tokens, ref)
    assert not torch.equal(ok.teacher_tokens[:, p:], quirk.teacher_tokens[:, p:])


def test_teacher_start_zero_and_teacher_to_the_end(student, teacher, data):
    noise, cond, codebook = data
    K = teacher.layout.num_steps
    tr = teacher_involved(student, teacher, noise, cond, (0, 2), 0, 3, codebook,
                          greedy_chooser, GREEDY, return_trace=True)
    assert tr.x_step1 is None and tr.snapped is None  # no first DD step
    assert torch.equal(tr.teacher_tokens, decode(teacher, cond, GREEDY, greedy_chooser,
                                                 end_step=2))
    full = teacher_involved(student, teacher, noise, cond, (0, K), 1, 2, codebook,
                            greedy_chooser, GREEDY, return_trace=True)
    assert torch.equal(full.x, full.x_teacher)  # m = K: the teacher finishes, no DD step
    assert torch.equal(full.x, codebook[full.teacher_tokens])
    with pytest.raises(ValueError, match="teacher_start < m"):
        teacher_involved(student, teacher, noise, cond, (0, 2), 2, 2, codebook, greedy_chooser)
    with pytest.raises(ValueError, match=r"\(0, m\)"):
        teacher_involved(student, teacher, noise, cond, (1, 3), 0, 2, codebook, greedy_chooser)


def _inverse_cdf(eps: Tensor, probs: Tensor) -> Tensor:
    """A deterministic chooser from the noise: u = Phi(eps[..., 0]), token = F^-1(u)."""
    u = 0.5 * (1 + torch.erf(eps[..., 0] / math.sqrt(2)))
    cdf = probs.cumsum(-1)
    return torch.searchsorted(cdf, u[..., None].clamp(max=cdf[..., -1:])).squeeze(-1)


def test_choosers_make_the_result_a_function_of_noise_or_generator(student, teacher, data):
    noise, cond, codebook = data
    sampling = SamplingConfig(cfg_scale=2.0, top_k=16)

    def run(chooser, eps=noise) -> Tensor:
        return teacher_involved(student, teacher, eps, cond, (0, 3), 1, 2, codebook, chooser,
                                sampling, return_trace=True).teacher_tokens

    layout = teacher.layout
    a = run(NoiseChooser(_inverse_cdf, noise, layout))
    assert torch.equal(a, run(NoiseChooser(_inverse_cdf, noise, layout)))
    other = noise.clone()
    other[:, layout.begin(1):] = -other[:, layout.begin(1):]  # same step-1 input, new noise
    assert not torch.equal(a, run(NoiseChooser(_inverse_cdf, other, layout), other))
    m1 = run(MultinomialChooser(torch.Generator().manual_seed(0)))
    m2 = run(MultinomialChooser(torch.Generator().manual_seed(0)))
    assert torch.equal(m1, m2)


def test_intermediate_steps_choose_only_the_positions_the_next_step_keeps(student, data):
    """A costly choice (the flow map) runs once per position over a few-step run: before the
    last step only on the positions the next step keeps; the final sequence is the one of
    the unrestricted steps."""
    from ardistill.sampling.methods import dd_token_choice

    noise, cond, codebook = data
    layout, split, t2 = student.layout, 3, 2
    flow = dd_token_choice("flow", codebook, temperature=0.7)
    seen: list[int] = []

    def counting(logits: Tensor, eps: Tensor) -> Tensor:
        assert logits.shape[1] == eps.shape[1]
        seen.append(eps.shape[1])
        return flow(logits, eps)

    with torch.no_grad():
        fast = few_step(student, noise, cond, [0, t2], split, codebook, choose=counting)
        x1 = step(student, noise, noise, cond, 0, split, codebook, flow)
        full = step(student, x1, noise, cond, t2, split, codebook, flow)
    assert seen == [layout.begin(t2), layout.begin(split) - layout.begin(t2)]
    assert torch.equal(fast, full)
