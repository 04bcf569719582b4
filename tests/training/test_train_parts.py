"""EMA math, export / load round trip, data sharding, loss masks, the onestep* closed form."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from train_helpers import debug_cfg

from ardistill.core.pairs_dataset import PairsDataset, training_inputs
from ardistill.errors import CheckpointError
from ardistill.student.base import StudentOutput
from ardistill.student.files import export_student, load_trained_student, read_export_metadata
from ardistill.student.procedure import few_step
from ardistill.student.registry import build_student
from ardistill.training import LossConfig, train
from ardistill.training.data import StepSampler
from ardistill.training.ema import EMA, ema_decay_at
from ardistill.training.evaluate import marginal_frequencies, onestep_expected_agreement
from ardistill.training.losses import dd_loss


def test_ema_closed_form():
    lin = nn.Linear(3, 2)
    ema = EMA(lin, decay=0.9, warmup=False)
    start = lin.weight.detach().clone()
    targets = [torch.full_like(start, float(v)) for v in (1.0, -2.0, 0.5)]
    expect = start.clone()
    for s, w in enumerate(targets):
        with torch.no_grad():
            lin.weight.copy_(w)
        assert ema.update(lin, s) == 0.9
        expect = 0.9 * expect + 0.1 * w
    assert torch.allclose(ema.module.weight, expect, atol=1e-7)
    assert not ema.module.weight.requires_grad
    assert ema_decay_at(0.999, 0, True) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 10**6, True) == 0.999


def test_sampler_shards_partition_the_global_batch():
    one = StepSampler(50, 8, (0, 3), seed=5)
    parts = [StepSampler(50, 8, (0, 3), seed=5, rank=r, world=2) for r in range(2)]
    for step in (0, 6, 7, 13):  # 7: the batch crosses an epoch boundary (56 > 50)
        idx, t = one.global_batch(step)
        li = torch.cat([p.local_batch(step)[0] for p in parts])
        lt = torch.cat([p.local_batch(step)[1] for p in parts])
        assert torch.equal(idx, li) and torch.equal(t, lt)
        assert set(t.tolist()) <= {0, 3}
    epoch0 = torch.cat([one.global_batch(s)[0] for s in range(7)])[:50]
    assert sorted(epoch0.tolist()) == list(range(50))  # every sample once per epoch
    with pytest.raises(ValueError, match="multiple"):
        StepSampler(50, 7, (0,), seed=0, world=2)


def test_loss_ignores_data_positions(pairs_cache, tiny):
    teacher = tiny("tiny-llamagen")
    ds = PairsDataset(pairs_cache("tiny-llamagen"))
    batch = ds.get(torch.arange(4))
    cb = teacher.dd_codebook()
    inp = training_inputs(batch, torch.tensor([0, 3, 5, 8]), cb, ds.layout)
    g = torch.Generator().manual_seed(0)
    n, v, d = ds.layout.num_positions, ds.vocab_size, ds.codebook_dim
    out = StudentOutput(torch.randn(4, n, d, generator=g), torch.randn(4, n, v, generator=g))
    cfg = LossConfig(ce=1.0, latent=1.0)
    base = dd_loss(out, inp, cb, ds.layout, 6, cfg)
    # change outputs at data positions (< begin(t)) and the continuous head before the split
    lo, co = out.logits.clone(), out.conti.clone()
    lo[1, :3] += 5.0 * torch.randn(3, v, generator=g)  # (a constant shift is softmax-neutral)
    lo[3, :8] -= 3.0 * torch.randn(8, v, generator=g)
    co[:, :6] += 1.0
    same = dd_loss(StudentOutput(co, lo), inp, cb, ds.layout, 6, cfg)
    assert torch.equal(base.total, same.total)
    lo[1, 3] += 5.0 * torch.randn(v, generator=g)  # a generated position counts
    assert not torch.equal(base.ce, dd_loss(StudentOutput(co, lo), inp, cb, ds.layout, 6,
                                            cfg).ce)
    co[0, 6] += 1.0  # a continuous-head position counts
    assert not torch.equal(base.latent, dd_loss(StudentOutput(co, lo), inp, cb, ds.layout, 6,
                                                cfg).latent)


@pytest.mark.parametrize("spec, kind", [("tiny-var", "pixel-l1"), ("tiny-llamagen", "mnist")])
def test_perceptual_loss_trains(pairs_cache, tiny, tmp_path, spec, kind):
    teacher = tiny(spec)
    cfg = debug_cfg(pairs_cache(spec), tmp_path, steps=3,
                    loss=LossConfig(perceptual=kind, perceptual_weight=1.0))
    res = train(cfg, teacher=teacher)
    assert all(torch.isfinite(torch.tensor(res.losses)))
    rec = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_perceptual"] > 0 for r in rec if "loss" in r)
    decoder = teacher.vqvae if spec == "tiny-var" else teacher.vq
    assert not any(p.grad is not None for p in decoder.parameters())


def test_export_load_round_trip(tiny, tmp_path):
    teacher = tiny("tiny-var")
    student = build_student(teacher, generator=torch.Generator().manual_seed(3))
    path = export_student(student, tmp_path / "s.safetensors", teacher, t_list=(0, 2), split=2,
                          spec="tiny-var")
    meta = read_export_metadata(path)
    assert meta["teacher_fingerprint"] == teacher.fingerprint() and meta["family"] == "var"
    ts = load_trained_student(path, teacher=teacher)
    assert ts.t_list == (0, 2) and ts.split == 2
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2, teacher.layout.num_positions, teacher.codebook_dim, generator=g)
    cond = teacher.sample_conditions(2, g)
    cb = teacher.dd_codebook()
    sa, sb = student.state_dict(), ts.student.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # outputs: equal up to kernel choice (memory layout of the loaded tensors)
    torch.testing.assert_close(few_step(student.eval(), noise, cond, (0, 2), 2, cb),
                               few_step(ts.student, noise, cond, ts.t_list, ts.split, cb),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match="trained for teacher"):
        load_trained_student(path, teacher=tiny("tiny-llamagen"))
    torch.save({"w": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_trained_student(tmp_path / "x.pt", teacher=teacher)


def test_onestep_closed_form_matches_sampling(pairs_cache):
    ds = PairsDataset(pairs_cache("tiny-var"))
    train_ds, held = ds.split_holdout(16)
    f = marginal_frequencies(train_ds, ds.vocab_size)
    assert torch.allclose(f.sum(1), torch.ones(f.shape[0], dtype=torch.float64))
    closed = onestep_expected_agreement(f, held)
    g = torch.Generator().manual_seed(0)
    y = torch.from_numpy(held.read(range(len(held)))["tokens"])
    draws = torch.multinomial(f.float(), 4000, replacement=True, generator=g).T  # (4000, N)
    mc = float((draws[:, None, :] == y[None]).double().mean())
    assert mc == pytest.approx(closed, abs=0.01)
