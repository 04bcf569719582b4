"""A text-conditional teacher end to end: caption-conditioned pairs -> `train` -> export ->
`load_trained_student` -> DD sampling with the captions (tiny LlamaGen t2i, real math)."""

from __future__ import annotations

import json

import numpy as np
import torch
from train_helpers import debug_cfg

from ardistill.core.captions import Captions
from ardistill.core.pairs_dataset import PairsDataset
from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.run import generate_pairs
from ardistill.sampling.methods import sample_dd
from ardistill.student.files import load_trained_student
from ardistill.training import train
from tiny_teachers import load_tiny


def _captions(rows: int = 6, seed: int = 0) -> Captions:
    g = np.random.default_rng(seed)
    mask = np.zeros((rows, 6), dtype=bool)
    for r in range(rows):
        mask[r, 6 - (r % 6 + 1):] = True  # left-padded, 1..6 valid caption tokens
    cap = (3 * g.standard_normal((rows, 6, 12)) * mask[..., None]).astype(np.float32)
    return Captions(cap, mask, "0" * 64)


def test_t2i_pairs_train_export_sample(tmp_path):
    teacher = load_tiny("tiny-t2i")
    pairs = tmp_path / "pairs"
    generate_pairs(teacher, PairsSettings(num=48, seed=1, shard_size=16, micro_batch=16), pairs,
                   captions=_captions(), options=GenOptions(batch_size=16, progress=False))
    ds = PairsDataset(pairs)
    assert ds.identity["condition"]["kind"] == "caption"

    res = train(debug_cfg(pairs, tmp_path / "run", steps=4), teacher=teacher)
    assert len(res.losses) == 4 and all(np.isfinite(res.losses))
    ts = load_trained_student(res.export, teacher=teacher)
    assert ts.teacher.fingerprint() == teacher.fingerprint()

    batch = ds.get([0, 1, 2, 3])  # samples 0..3 use caption rows 0..3
    assert batch.cond.caption.shape == (4, 6, 12) and batch.cond.labels is None
    out = sample_dd(ts.student, batch.noise, batch.cond, ts.t_list, ts.split,
                    teacher.dd_codebook())
    assert out.tokens.shape == batch.tokens.shape
    assert torch.isfinite(out.latents).all()
    # the caption reaches the student: the same noise under another caption gives other latents
    other = ds.get([4, 5, 4, 5]).cond
    out2 = sample_dd(ts.student, batch.noise, other, ts.t_list, ts.split, teacher.dd_codebook())
    assert not torch.equal(out.latents, out2.latents)
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log)
