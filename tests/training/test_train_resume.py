"""Exact resume (k steps + resume + k == 2k straight, bit for bit on CPU) and the divergence
guard (a NaN batch stops the run and leaves the last good checkpoint intact)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import debug_cfg

from ardistill.errors import CheckpointError, TrainingDiverged
from ardistill.student.files import export_student
from ardistill.student.registry import build_student
from ardistill.training import train
from ardistill.training.state import list_checkpoints, load_checkpoint


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(run):
    ck = load_checkpoint(list_checkpoints(run)[-1][1])
    return ck["model"], ck["ema"], ck["optim"]["state"]


@pytest.mark.parametrize("spec", ["tiny-llamagen", "tiny-var"])
def test_resume_continues_the_same_trace(pairs_cache, tiny, tmp_path, spec):
    pairs, teacher = pairs_cache(spec), tiny(spec)
    # lr schedule with warmup + cosine, so the scheduler state matters too
    kw = dict(steps=8, ckpt_every=4, optim=debug_cfg(pairs, tmp_path).optim.__class__(
        lr=1e-3, warmup_steps=3, schedule="cosine"))
    straight = train(debug_cfg(pairs, tmp_path / "a", **kw), teacher=teacher)
    first = train(debug_cfg(pairs, tmp_path / "b", stop_at=4, **kw), teacher=teacher)
    assert first.export is None and [s for s, _ in list_checkpoints(tmp_path / "b")] == [4]
    second = train(debug_cfg(pairs, tmp_path / "b", **kw), teacher=teacher)
    assert second.start == 4 and first.steps == 4 and second.steps == 8
    assert first.losses + second.losses == straight.losses  # bit for bit
    for a, b in zip(_state(tmp_path / "a"), _state(tmp_path / "b")):
        ka = a.keys()
        assert ka == b.keys()
        for k in ka:
            va, vb = a[k], b[k]
            if isinstance(va, dict):
                assert all(torch.equal(va[j], vb[j]) for j in va)
            else:
                assert torch.equal(va, vb), k
    ea, eb = load_file(straight.export), load_file(second.export)
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


def test_resume_refuses_other_settings(pairs_cache, tiny, tmp_path):
    pairs, teacher = pairs_cache("tiny-var"), tiny("tiny-var")
    train(debug_cfg(pairs, tmp_path, steps=2), teacher=teacher)
    with pytest.raises(ValueError, match="other settings.*split"):
        train(debug_cfg(pairs, tmp_path, steps=4, split=1), teacher=teacher)


def test_nan_batch_stops_and_keeps_last_good_checkpoint(pairs_cache, tiny, tmp_path):
    pairs, teacher = pairs_cache("tiny-var"), tiny("tiny-var")
    cfg = debug_cfg(pairs, tmp_path / "bad", steps=10, ckpt_every=3, keep_last=5)
    with pytest.raises(TrainingDiverged, match=r"step 8: the loss is nan.*step_00000006\.pt "
                                               r"is intact"):
        train(cfg.replace(fault_nan_step=8), teacher=teacher)
    ckpts = list_checkpoints(tmp_path / "bad")
    assert [s for s, _ in ckpts] == [3, 6]
    digest = _sha(ckpts[-1][1])
    # the kept checkpoint is the good state of step 6: the same as a clean run's
    train(debug_cfg(pairs, tmp_path / "good", steps=6, ckpt_every=3), teacher=teacher)
    good = load_checkpoint(list_checkpoints(tmp_path / "good")[-1][1])["model"]
    bad = load_checkpoint(ckpts[-1][1])["model"]
    assert all(torch.equal(good[k], bad[k]) for k in good)
    # resuming without the fault finishes from step 6 and leaves the old file untouched
    res = train(cfg, teacher=teacher)
    assert res.start == 6 and res.steps == 10 and all(map(torch.isfinite,
                                                          torch.tensor(res.losses)))
    assert _sha(ckpts[-1][1]) == digest


def test_init_student_starts_from_its_weights(pairs_cache, tiny, tmp_path):
    """--init-student: a new run starts from the file's weights (the first step's loss is the
    file's loss, not a fresh init's), and another teacher's student is refused."""
    pairs, teacher = pairs_cache("tiny-var"), tiny("tiny-var")
    base = train(debug_cfg(pairs, tmp_path / "a", steps=6), teacher=teacher)
    fresh = train(debug_cfg(pairs, tmp_path / "fresh", steps=1), teacher=teacher)
    tuned = train(debug_cfg(pairs, tmp_path / "b", steps=1, init_student=str(base.export)),
                  teacher=teacher)
    again = train(debug_cfg(pairs, tmp_path / "c", steps=1, init_student=str(base.export)),
                  teacher=teacher)
    assert tuned.losses == again.losses and tuned.losses[0] != fresh.losses[0]
    assert tuned.losses[0] < fresh.losses[0]
    other = tiny("tiny-llamagen")
    wrong = export_student(build_student(other), tmp_path / "wrong.safetensors", other,
                           t_list=(0,), split=2)
    with pytest.raises(CheckpointError, match="not this"):
        train(debug_cfg(pairs, tmp_path / "d", steps=1, init_student=str(wrong)),
              teacher=teacher)
