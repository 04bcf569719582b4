"""DD2 (method.md §10) on the tiny teachers: the teacher's exact conditional score, the
AR-diffusion model's regression, an end-to-end run that moves the generator towards the
teacher, exact resume and the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ardistill.cli import main
from ardistill.core.choosers import RowMultinomialChooser
from ardistill.student.ardiffusion import ARDiffusion, noised, teacher_denoiser
from ardistill.teachers.base import Condition, decode
from ardistill.training import dd2_steps as S
from ardistill.training.dd2 import dd2_recipe, train_dd2
from tiny_teachers import SPECS, load_tiny

FAMILIES = ["tiny-llamagen", "tiny-var"]


def _teacher_samples(teacher, n: int, seed: int = 0):
    cond = Condition(labels=torch.arange(n) % teacher.num_classes)
    choose = RowMultinomialChooser(list(range(seed, seed + n)))
    return decode(teacher, cond, teacher.default_sampling, choose), cond


@pytest.mark.parametrize("spec", FAMILIES)
def test_teacher_score_is_the_gradient_of_its_noised_conditional(spec):
    """For every position of a raster and a next-scale teacher (with top-k / top-p zeros in
    its distributions), -(x - (1 - t) D) / t^2 equals autograd of log sum_j p_ij N(x; (1 - t)
    c_j, t^2 I), p_ij the teacher's distribution given the prefix (one teacher-forcing pass)."""
    teacher = load_tiny(spec)
    sampling = teacher.default_sampling.replace(top_k=10, top_p=0.9)
    tokens, cond = _teacher_samples(teacher, 3)
    probs = teacher.guided_probs(tokens, cond, sampling)
    assert bool((probs == 0).any())  # the filtered distributions have zeros
    g = torch.Generator().manual_seed(1)
    cb = teacher.dd_codebook()
    t = torch.rand(3, generator=g) * 0.8 + 0.1
    x_t = noised(cb[tokens], t, torch.randn(*tokens.shape, cb.shape[1], generator=g))
    d = teacher_denoiser(teacher, tokens, cond, x_t, t, sampling)
    tt = t[:, None, None]
    score = -(x_t - (1 - tt) * d) / tt**2
    x = x_t.double().requires_grad_(True)
    mean = (1 - t.double())[:, None, None, None] * cb.double()[None, None]  # (B, 1, V, d)
    log_n = -((x[:, :, None] - mean) ** 2).sum(-1) / (2 * t.double()[:, None, None] ** 2)
    log_p = torch.logsumexp(probs.double().log() + log_n, dim=-1).sum()
    (grad,) = torch.autograd.grad(log_p, x)
    torch.testing.assert_close(score.double(), grad, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("spec", FAMILIES)
def test_regression_loss_is_zero_when_the_model_gives_the_teachers_score(spec):
    """The AR-diffusion model starts as the teacher without guidance: for a teacher sampling
    without CFG or filtering the stage-1 loss is 0; with CFG it is not, and training lowers
    it."""
    teacher = load_tiny(spec)
    neutral = 1.0 if teacher.family == "llamagen" else 0.0
    plain = teacher.default_sampling.replace(cfg_scale=neutral, top_k=0, top_p=1.0)
    tokens, cond = _teacher_samples(teacher, 4)
    fake = ARDiffusion(teacher)
    g = torch.Generator().manual_seed(0)
    d = S.draws(g, 4, tokens.shape[1], teacher.codebook_dim, 0.05, 0.95, torch.device("cpu"))
    cb = teacher.dd_codebook()
    teacher.default_sampling, guided = plain, teacher.default_sampling
    try:
        assert float(S.regression_loss(fake, teacher, tokens, cond, d, cb).detach()) < 1e-9
    finally:
        teacher.default_sampling = guided
    before = float(S.regression_loss(fake, teacher, tokens, cond, d, cb).detach())
    assert before > 1e-4
    opt = torch.optim.Adam(fake.parameters(), lr=3e-3)
    for _ in range(60):
        loss = S.regression_loss(fake, teacher, tokens, cond, d, cb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(S.regression_loss(fake, teacher, tokens, cond, d, cb).detach()) < 0.6 * before
    # the original teacher is untouched (the model trains its own copy)
    again = S.regression_loss(ARDiffusion(teacher), teacher, tokens, cond, d, cb).detach()
    assert float(again) == pytest.approx(before)


def _marginal_tv(a: torch.Tensor, b: torch.Tensor, vocab: int) -> float:
    """Mean over positions of the total variation between the token histograms of a, b."""
    ha = torch.stack([torch.bincount(col, minlength=vocab) for col in a.T]).double()
    hb = torch.stack([torch.bincount(col, minlength=vocab) for col in b.T]).double()
    return float((ha / ha.sum(1, keepdim=True) - hb / hb.sum(1, keepdim=True)).abs().sum(1)
                 .mean() / 2)


@pytest.mark.slow  # a few hundred tiny steps: about a minute
def test_a_tiny_run_moves_the_generator_towards_the_teacher(tmp_path):
    """From a generator far from the teacher (a DD1 student built from the teacher's weights,
    never trained), DD2 lowers the cross-entropy of the generator's samples under the teacher
    (the teacher's NLL, bits per token: KL(gen || teacher) + H(gen); about 29 bits at the start,
    the teacher's own samples score 2) and does not move its per-position token marginals
    away from the teacher's (total variation over 256 samples)."""
    teacher = load_tiny("tiny-var")
    cfg = dd2_recipe("dd2-debug", teacher=SPECS["tiny-var"], out=str(tmp_path / "run"),
                     regress_steps=40, guidance_warmup=40, steps=300, batch_size=16,
                     lr_gen=1e-3, lr_guidance=1e-3, ema_decay=0.9, log_every=50)
    ref, cond = _teacher_samples(teacher, 256, seed=1000)

    def measure(student):
        g = torch.Generator().manual_seed(7)
        noise = torch.randn(256, ref.shape[1], teacher.codebook_dim, generator=g)
        tokens, _ = S.generate(student, noise, cond, teacher.dd_codebook())
        return _marginal_tv(tokens, ref, teacher.vocab_size), S.teacher_nll_bits(
            teacher, tokens, cond)

    from ardistill.student.registry import build_student

    init = build_student(teacher, generator=torch.Generator().manual_seed(cfg.seed))
    tv0, nll0 = measure(init)
    res = train_dd2(cfg)
    from ardistill.student.files import load_trained_student

    tv1, nll1 = measure(load_trained_student(res.export, teacher=teacher).student)
    assert nll1 < 0.75 * nll0, (nll0, nll1)
    assert tv1 <= tv0 + 0.03, (tv0, tv1)


def test_resume_repeats_the_loss_trace_bit_for_bit(tmp_path):
    base = dict(teacher=SPECS["tiny-var"], regress_steps=2, guidance_warmup=2, steps=4)
    straight = train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / "a"), **base))
    train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / "b"), stop_at=5, **base))
    resumed = train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / "b"), **base))
    assert resumed.start == 5
    logs = [[{k: v for k, v in json.loads(ln).items() if k != "time"}
             for ln in (tmp_path / r / "log.jsonl").read_text().splitlines()]
            for r in ("a", "b")]
    assert logs[0] == logs[1] and len(logs[0]) == 9  # 8 steps and the final evaluation
    a = torch.load(tmp_path / "a" / "checkpoints" / "step_00000008.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step_00000008.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert straight.losses[-3:] == resumed.losses[-3:]


def test_nan_stops_the_run_and_keeps_the_checkpoint(tmp_path, capsys):
    argv = ["train", "--method", "dd2", "--teacher", SPECS["tiny-var"], "--out",
            str(tmp_path / "run"), "--recipe", "dd2-debug", "--ckpt-every", "2"]
    cfg = dd2_recipe("dd2-debug", teacher=SPECS["tiny-var"], out=str(tmp_path / "run"),
                     ckpt_every=2, fault_nan_step=3)
    with pytest.raises(Exception, match="step 3: the loss is nan.*step_00000002.pt"):
        train_dd2(cfg)
    assert main(argv) == 0  # the same run without the fault resumes from step 2 and finishes
    assert (tmp_path / "run" / "student.safetensors").is_file()


def test_commands_train_and_sample_dd2(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--method", "dd2", "--teacher", SPECS["tiny-llamagen"], "--out",
                 str(run), "--recipe", "dd2-debug"]) == 0
    assert "EMA student exported" in capsys.readouterr().out
    assert main(["sample", "--method", "dd2", "--teacher", SPECS["tiny-llamagen"], "--student",
                 str(run / "student.safetensors"), "--num", "4", "--batch-size", "2",
                 "--out", str(tmp_path / "s")]) == 0
    meta = json.loads((tmp_path / "s" / "sample.json").read_text())
    assert meta["label"] == "DD2 1-step" and meta["steps"] == 1
    with np.load(tmp_path / "s" / "samples.npz") as f:
        assert f["arr_0"].shape[0] == 4
    # flags of the other method are errors, not silently ignored
    assert main(["train", "--method", "dd2", "--teacher", SPECS["tiny-llamagen"], "--out",
                 str(tmp_path / "x"), "--latent", "1"]) == 2
    assert "apply to DD1 training only" in capsys.readouterr().err
    assert main(["train", "--pairs", "p", "--out", str(tmp_path / "y"), "--lr-gen", "1"]) == 2
    assert "apply to --method dd2 only" in capsys.readouterr().err
    assert main(["sample", "--method", "dd2", "--teacher", SPECS["tiny-llamagen"], "--steps",
                 "2", "--out", str(tmp_path / "z")]) == 2
    assert "one step" in capsys.readouterr().err


def test_full_size_dd2_networks_build_with_the_official_student_sizes():
    """The generator of a full-size preset is its DD student (the official parameter counts,
    method.md §4); the guidance network is a copy of the teacher's AR network. Built on the
    meta device: no weights, no memory."""
    from ardistill.training.dd2 import dd2_sizes

    assert dd2_sizes("llamagen-b") == {"generator": 98_321_672, "guidance": 110_888_448}
    assert dd2_sizes("llamagen-l")["generator"] == 326_155_272
    assert dd2_sizes("var-d16") == {"generator": 328_165_664, "guidance": 310_283_520}
    assert dd2_sizes("var-d20")["generator"] == 635_399_088


def test_pairs_anchor_pulls_the_generator_to_the_flow_maps_tokens(tmp_path, pairs_cache):
    """`pairs_weight`: DD1's cross-entropy on a pairs dataset joins the generator's loss. It
    is logged, needs pairs, resumes bit for bit, and pulls the generator towards the flow
    map's tokens (lower cross-entropy on the pairs than the same run without it)."""
    from ardistill.core.pairs_dataset import PairsDataset
    from ardistill.student.files import load_trained_student

    pairs = pairs_cache("tiny-var", 64)
    with pytest.raises(ValueError, match="needs pairs"):
        dd2_recipe("dd2-debug", teacher=SPECS["tiny-var"], out="x", pairs_weight=1.0)
    base = dict(teacher=SPECS["tiny-var"], pairs=str(pairs), regress_steps=2,
                guidance_warmup=2, steps=30, lr_gen=1e-3, ema_decay=0.0)
    runs = {w: train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / f"w{w}"),
                                    pairs_weight=w, **base)) for w in (0.0, 5.0)}
    logs = [json.loads(ln) for ln in (tmp_path / "w5.0" / "log.jsonl").read_text().splitlines()]
    assert any("loss_pairs_ce" in r for r in logs)
    assert not any("loss_pairs_ce" in r for r in map(
        json.loads, (tmp_path / "w0.0" / "log.jsonl").read_text().splitlines()))
    batch = PairsDataset(pairs).get(np.arange(64))
    with torch.no_grad():
        ce = {w: float(S.pairs_regression_loss(load_trained_student(r.export).student,
                                               batch.noise, batch.cond, batch.tokens))
              for w, r in runs.items()}
    assert ce[5.0] < 0.9 * ce[0.0], ce
    # resume: stop at step 20 and finish; the same trace as the straight run
    train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / "r"), pairs_weight=5.0, stop_at=20,
                         **base))
    train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / "r"), pairs_weight=5.0, **base))
    trace = [{k: v for k, v in json.loads(ln).items() if k != "time"}
             for ln in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert trace == [{k: v for k, v in r.items() if k != "time"} for r in logs]
    # a run of another pairs_weight does not resume into this one
    with pytest.raises(ValueError, match="pairs_weight"):
        train_dd2(dd2_recipe("dd2-debug", out=str(tmp_path / "r"), pairs_weight=1.0, **base))


def test_a_generator_can_train_with_the_flow_choice_it_samples_with(tmp_path):
    """`dd_choice="flow"`: the generator's samples in training are the flow choice of its own
    input noise (the choice `sample` will use), its file records that choice, and
    `sample --method dd2` follows it by default."""
    from ardistill.core.choosers import dd_flow_choice
    from ardistill.student.files import load_student_file, load_trained_student

    teacher = load_tiny("tiny-llamagen")
    with pytest.raises(ValueError, match="dd_choice"):
        dd2_recipe("dd2-debug", teacher=SPECS["tiny-llamagen"], out="x", dd_choice="nucleus")
    res = train_dd2(dd2_recipe("dd2-debug", teacher=SPECS["tiny-llamagen"],
                               out=str(tmp_path / "run"), dd_choice="flow"))
    assert load_student_file(teacher, res.export)[1]["dd_choice"] == "flow"
    student = load_trained_student(res.export, teacher=teacher).student
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(8, teacher.layout.num_positions, teacher.codebook_dim, generator=g)
    cond = Condition(labels=torch.arange(8) % teacher.num_classes)
    cb = teacher.dd_codebook()
    with torch.no_grad():
        flow, _ = S.generate(student, noise, cond, cb, dd_flow_choice(cb))
        arg, _ = S.generate(student, noise, cond, cb)
    t0 = torch.zeros(8, dtype=torch.long)
    logits = student(noise, cond, t0, logits_range=(0, noise.shape[1])).logits
    assert torch.equal(arg, logits.argmax(-1))
    assert torch.equal(flow, dd_flow_choice(cb)(logits, noise))
    assert main(["sample", "--method", "dd2", "--teacher", SPECS["tiny-llamagen"], "--student",
                 str(res.export), "--num", "2", "--out", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["label"] == \
        "DD2 1-step (flow)"
