"""The on-disk format and the reader the training loop uses."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from ardistill.core.pairs_dataset import PairsDataset, training_inputs
from ardistill.core.seeds import noise_seeds, regenerate_noise
from ardistill.errors import PairsFileError
from ardistill.pairs.verify import verify_pairs
from ardistill.teachers.base import dd_state


def test_files_manifest_and_standard_shards(var_ds):
    names = sorted(p.name for p in var_ds.iterdir())
    assert names == ["config.json", "manifest.json"] + [
        f"shard-{k:06d}.{ext}" for k in range(3) for ext in ("json", "safetensors")]
    man = json.loads((var_ds / "manifest.json").read_text())
    ident = man["identity"]
    assert ident == json.loads((var_ds / "config.json").read_text())
    assert ident["teacher"]["name"] == "tiny-var-0" and len(ident["teacher"]["fingerprint"]) == 64
    assert ident["layout"]["num_positions"] == 30 and ident["codebook_dim"] == 8
    assert ident["token_dtype"] == "uint16" and ident["sampling"]["top_k"] == 16
    assert ident["generation"]["micro_batch"] == 2 and "solver" in ident["flow"]
    assert man["bytes_per_sample"] == 30 * 2 + 24
    assert man["noise_bytes_per_sample_if_stored"] == 30 * 8 * 4
    assert [s["count"] for s in man["shards"]] == [4, 4, 2]
    assert man["environments"][0]["torch"] == torch.__version__
    # a shard is a plain safetensors file
    arrays = load_file(str(var_ds / "shard-000002.safetensors"))
    assert arrays["index"].tolist() == [8, 9]
    assert arrays["tokens"].dtype == np.uint16 and arrays["tokens"].shape == (2, 30)
    assert arrays["noise_seed"].tolist() == noise_seeds(3, [8, 9]).tolist()


def test_get_reads_rows_across_shards_in_order(var_ds):
    ds = PairsDataset(var_ds)
    assert len(ds) == 10 and ds.layout.num_positions == 30
    batch = ds.get(torch.tensor([9, 0, 5, 5]))
    assert batch.index.tolist() == [9, 0, 5, 5] and len(batch) == 4
    assert batch.tokens.dtype == torch.int64 and batch.tokens.shape == (4, 30)
    assert batch.noise.shape == (4, 30, 8) and batch.noise.dtype == torch.float32
    assert torch.equal(batch.noise, regenerate_noise(noise_seeds(3, [9, 0, 5, 5]), 30, 8))
    assert torch.equal(batch.tokens[2], batch.tokens[3])
    shard = load_file(str(var_ds / "shard-000002.safetensors"))
    assert torch.equal(batch.tokens[0], torch.from_numpy(shard["tokens"][1].astype(np.int64)))
    assert torch.equal(batch.cond.labels[0], torch.tensor(int(shard["label"][1])))
    # shards are memory-mapped, never read whole
    ds.get([1])
    assert all(isinstance(a["tokens"], np.memmap) for a in ds._shards.values())
    with pytest.raises(IndexError):
        ds.get([10])


def test_holdout_subset_and_pickle(var_ds):
    ds = PairsDataset(var_ds)
    train, held = ds.split_holdout(3)
    assert (len(train), len(held)) == (7, 3)
    assert held.get([0, 2]).index.tolist() == [7, 9]
    assert torch.equal(held.get([1]).tokens, ds.get([8]).tokens)
    with pytest.raises(IndexError):
        train.get([7])
    with pytest.raises(ValueError):
        ds.split_holdout(11)
    clone = pickle.loads(pickle.dumps(train))
    assert clone._shards == {} and torch.equal(clone.get([6]).tokens, ds.get([6]).tokens)


def test_training_inputs_match_the_student_procedure(var_ds, tiny):
    ds = PairsDataset(var_ds)
    teacher = tiny("tiny-var")
    codebook = teacher.dd_codebook()
    batch = ds.get([0, 1, 2])
    t = torch.tensor([0, 2, 4])
    inp = training_inputs(batch, t, codebook, ds.layout)
    want = dd_state(ds.layout, codebook[batch.tokens], batch.noise, t)
    assert torch.equal(inp.x_t, want)
    assert torch.equal(inp.targets, batch.tokens)
    begins = [ds.layout.begin(int(s)) for s in t]  # 0, 5, 30
    assert [int(m.sum()) for m in inp.loss_mask] == [30 - b for b in begins]
    assert torch.equal(inp.x_t[0], batch.noise[0])
    assert torch.equal(training_inputs(batch, 2, codebook, ds.layout).x_t[1], want[1])
    with pytest.raises(ValueError, match="timesteps"):
        training_inputs(batch, 5, codebook, ds.layout)


def test_digest_does_not_depend_on_shard_size(var_digest, dataset_cache):
    other = dataset_cache("tiny-var", num=10, seed=3, shard_size=6, micro_batch=2)
    assert verify_pairs(other).digest == var_digest


def test_reader_refuses_incomplete_or_foreign_folders(var_copy, tmp_path):
    (var_copy / "manifest.json").unlink()
    with pytest.raises(PairsFileError, match="incomplete"):
        PairsDataset(var_copy)
    with pytest.raises(PairsFileError, match="not a pairs dataset"):
        PairsDataset(tmp_path)
