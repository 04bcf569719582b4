"""verify-pairs: every kind of damage is found and named; the digest of a sound dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from ardistill.cli import main
from ardistill.core.pairs_format import self_checksum
from ardistill.errors import PairsFileError
from ardistill.pairs.verify import recompute_samples, verify_pairs
from ardistill.utils.files import encode_safetensors, sha256_file

SHARD = "shard-000001.safetensors"


def edit_json(path: Path, fn, fix_checksum: bool = True) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    if fix_checksum and "checksum" in obj:
        obj["checksum"] = self_checksum(obj)
    path.write_text(json.dumps(obj))


def rewrite_shard(root: Path, change) -> None:
    """Rewrite shard 1 with `change(arrays)` applied, and record the new file's checksum
    everywhere (a consistent forgery: only content checks can find it)."""
    path = root / SHARD
    arrays = {k: v.copy() for k, v in load_file(str(path)).items()}
    change(arrays)
    meta = {"format": "ardistill-pairs", "shard": "1", "first": "4", "count": "4"}
    path.write_bytes(encode_safetensors(arrays, meta))
    sha, size = sha256_file(path), path.stat().st_size

    def fix(man):
        man["shards"][1].update(sha256=sha, bytes=size)

    edit_json(root / "manifest.json", fix)


def test_sound_dataset_verifies(var_ds, var_digest):
    rep = verify_pairs(var_ds)
    assert rep.digest == var_digest and len(rep.digest) == 64
    assert rep.num_samples == 10 and rep.num_shards == 3


def test_flipped_byte(var_copy):
    path = var_copy / SHARD
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the tokens
    path.write_bytes(bytes(data))
    with pytest.raises(PairsFileError, match="sha256 differs.*corrupt"):
        verify_pairs(var_copy)


def test_truncated_shard(var_copy):
    path = var_copy / SHARD
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PairsFileError, match="truncated"):
        verify_pairs(var_copy)


def test_deleted_shard(var_copy):
    (var_copy / SHARD).unlink()
    with pytest.raises(PairsFileError, match=f"{SHARD}: missing"):
        verify_pairs(var_copy)


def test_missing_manifest_is_incomplete(var_copy):
    (var_copy / "manifest.json").unlink()
    with pytest.raises(PairsFileError, match="incomplete"):
        verify_pairs(var_copy)


def test_edited_manifest(var_copy):
    edit_json(var_copy / "manifest.json", lambda m: m.update(num_samples=9), fix_checksum=False)
    with pytest.raises(PairsFileError, match="checksum mismatch"):
        verify_pairs(var_copy)


def test_manifest_and_config_disagree(var_copy):
    edit_json(var_copy / "manifest.json",
              lambda m: m["identity"]["sampling"].update(top_k=5))
    with pytest.raises(PairsFileError, match="disagree: sampling.top_k"):
        verify_pairs(var_copy)


def test_consistently_changed_seed_is_caught_by_the_derivation(var_copy):
    for name in ("manifest.json", "config.json"):
        edit_json(var_copy / name, lambda m: (m.get("identity", m))["generation"]
                  .update(seed=4))
    with pytest.raises(PairsFileError, match="noise seeds differ"):
        verify_pairs(var_copy)


def test_forged_labels_and_noise_seeds(var_copy):
    rewrite_shard(var_copy, lambda a: a["label"].__setitem__(0, (a["label"][0] + 1) % 10))
    with pytest.raises(PairsFileError, match="conditions differ"):
        verify_pairs(var_copy)


def test_changed_random_stream_is_reported(var_copy):
    edit_json(var_copy / "manifest.json",
              lambda m: m["shards"][0].update(noise_sha256="0" * 64))
    with pytest.raises(PairsFileError, match="noise regenerated.*random stream changed"):
        verify_pairs(var_copy)


def test_forged_tokens_pass_checksums_but_not_recompute(var_copy, var_ds, tiny, var_digest):
    teacher = tiny("tiny-var")
    rep = recompute_samples(var_ds, teacher, 10)
    assert rep.mismatches == [] and rep.indices == list(range(10)) and rep.micro_batches == 5

    def change(a):
        a["tokens"][2, 7] = (int(a["tokens"][2, 7]) + 1) % 64
    rewrite_shard(var_copy, change)
    assert verify_pairs(var_copy).digest != var_digest  # the digest covers the tokens
    rep = recompute_samples(var_copy, teacher, 10)
    assert rep.mismatches == [6]
    with pytest.raises(PairsFileError, match="teacher"):
        recompute_samples(var_copy, tiny("tiny-llamagen"), 2)


def test_out_of_range_token(var_copy):
    rewrite_shard(var_copy, lambda a: a["tokens"].__setitem__((0, 0), 64))
    with pytest.raises(PairsFileError, match="token id 64 >= vocabulary size 64"):
        verify_pairs(var_copy)


def test_wrong_array_dtype(var_copy):
    rewrite_shard(var_copy, lambda a: a.update(tokens=a["tokens"].astype(np.int32)))
    with pytest.raises(PairsFileError, match="tokens is int32"):
        verify_pairs(var_copy)


def test_cli_exit_codes(var_ds, var_copy, var_digest, capsys):
    assert main(["verify-pairs", str(var_ds), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"digest: {var_digest}"
    (var_copy / SHARD).unlink()
    assert main(["verify-pairs", str(var_copy), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "missing" in captured.err
    assert "digest" not in captured.out
