"""Generation: stored tokens are the teacher + flow map for the stored noise, and the content
does not depend on the batch size (both families, class and caption conditions)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from ardistill.core.captions import Captions
from ardistill.core.choosers import NoiseChooser, build_noise_map
from ardistill.core.pairs_dataset import PairsDataset
from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.generate import PairsJob, decode_lockstep, intra_op_threads
from ardistill.pairs.run import generate_pairs
from ardistill.pairs.verify import verify_pairs
from ardistill.teachers.base import decode


def tiny_captions(rows: int = 5, seed: int = 0) -> Captions:
    g = np.random.default_rng(seed)
    mask = np.zeros((rows, 6), dtype=bool)
    for r in range(rows):
        mask[r, 6 - (r % 6 + 1):] = True  # left-padded, 1..6 valid tokens
    cap = (g.standard_normal((rows, 6, 12)) * mask[..., None]).astype(np.float32)
    return Captions(cap, mask, "0" * 64)


@pytest.mark.parametrize("spec", ["tiny-llamagen", "tiny-var"])
def test_stored_tokens_are_teacher_plus_flow_map(spec, tiny, dataset_cache):
    root = dataset_cache(spec, num=6, seed=2, shard_size=4, micro_batch=2)
    ds = PairsDataset(root)
    teacher = tiny(spec)
    noise_map = build_noise_map(teacher.dd_codebook(), None)
    for first in (0, 2, 4):  # every micro-batch, decoded the plain way
        batch = ds.get([first, first + 1])
        chooser = NoiseChooser(noise_map, batch.noise, teacher.layout)
        with intra_op_threads(1):
            tokens = decode(teacher, batch.cond, teacher.default_sampling, chooser)
        assert torch.equal(tokens, batch.tokens)
    labels = ds.get(range(6)).cond.labels
    assert labels.min() >= 0 and labels.max() < teacher.num_classes


def test_caption_conditions_and_tokens(tiny, dataset_cache):
    caps = tiny_captions()
    root = dataset_cache("tiny-t2i", captions=caps, num=7, seed=0, shard_size=4, micro_batch=1)
    ds = PairsDataset(root)
    teacher = tiny("tiny-t2i")
    batch = ds.get([6, 1])
    assert torch.equal(batch.cond.caption, torch.from_numpy(caps.caption[[1, 1]]))
    assert torch.equal(batch.cond.caption_mask, torch.from_numpy(caps.mask[[1, 1]]))
    chooser = NoiseChooser(build_noise_map(teacher.dd_codebook(), None), batch.noise,
                          teacher.layout)
    tokens = decode(teacher, batch.cond, teacher.default_sampling, chooser)
    assert torch.equal(tokens, batch.tokens)
    assert ds.identity["condition"]["rows"] == 5
    with pytest.raises(ValueError, match="text-conditional"):
        PairsJob(teacher, PairsSettings(num=1))
    with pytest.raises(ValueError, match="class-conditional"):
        PairsJob(tiny("tiny-var"), PairsSettings(num=1), captions=caps)


def test_lockstep_equals_separate_sessions(tiny):
    teacher = tiny("tiny-var")
    job = PairsJob(teacher, PairsSettings(num=8, micro_batch=2, shard_size=8))
    cond, _ = job.conditions(np.arange(6))
    noise = torch.randn(6, teacher.layout.num_positions, teacher.codebook_dim,
                        generator=torch.Generator().manual_seed(0))
    chooser = NoiseChooser(job.noise_map, noise, teacher.layout)
    together = decode_lockstep(teacher, cond, job.sampling, chooser, 2)
    for j in range(3):
        sl = slice(2 * j, 2 * j + 2)
        one = decode(teacher, cond[sl], job.sampling,
                     NoiseChooser(job.noise_map, noise[sl], teacher.layout))
        assert torch.equal(one, together[sl])
    with pytest.raises(ValueError, match="multiple of micro_batch"):
        decode_lockstep(teacher, cond[:5], job.sampling, chooser, 2)


@pytest.mark.parametrize("spec", ["tiny-llamagen", "tiny-var"])
def test_content_does_not_depend_on_batch_size(spec, dataset_cache):
    # micro-batches of 1: batches of 1, 3 and 8 samples put 1, 3 and 8 sessions in lockstep
    # and 1-8 rows through each flow-map call.
    digests = {verify_pairs(dataset_cache(spec, batch_size=b, num=8, seed=4, shard_size=8,
                                          micro_batch=1)).digest for b in (1, 3, 8)}
    assert len(digests) == 1
    # micro-batches of 4: one or two sessions per batch
    digests = {verify_pairs(dataset_cache(spec, batch_size=b, num=8, seed=4, shard_size=8,
                                          micro_batch=4)).digest for b in (4, 8)}
    assert len(digests) == 1


def test_content_depends_on_seed_and_settings(var_digest, dataset_cache):
    other = dataset_cache("tiny-var", num=10, seed=4, shard_size=4, micro_batch=2)
    assert verify_pairs(other).digest != var_digest
    sub = dataset_cache("tiny-var", num=10, seed=3, shard_size=4, micro_batch=2, classes=(1, 2))
    labels = PairsDataset(sub).get(range(10)).cond.labels
    assert set(labels.tolist()) <= {1, 2}


def test_compute_needs_whole_micro_batches(tiny, tmp_path):
    job = PairsJob(tiny("tiny-var"), PairsSettings(num=8, micro_batch=4, shard_size=8))
    with pytest.raises(ValueError, match="whole micro-batches"):
        job.compute(2, 4)
    with pytest.raises(ValueError, match="multiple of micro_batch"):
        generate_pairs(tiny("tiny-var"), PairsSettings(num=8, micro_batch=4, shard_size=8),
                       tmp_path, options=GenOptions(batch_size=6, progress=False))
    with pytest.raises(ValueError, match="shard_size"):
        PairsSettings(num=8, micro_batch=3, shard_size=8)


def test_progress_bar_shows_rate_and_eta(tiny, tmp_path, capsys):
    settings = PairsSettings(num=4, seed=1, shard_size=4, micro_batch=2)
    generate_pairs(tiny("tiny-llamagen"), settings, tmp_path / "ds",
                   options=GenOptions(batch_size=2, progress=True))
    err = capsys.readouterr().err
    # tqdm: "gen-pairs: 100%|...| 4/4 [elapsed<remaining, rate]"
    assert re.search(r"gen-pairs: +100%.*4/4 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(pair/s|s/pair)\]",
                     err), err
