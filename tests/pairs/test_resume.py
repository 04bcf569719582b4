"""Resuming: kill -9 at any point, rerun the same command, get the same dataset; other
settings into the same folder are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ardistill.cli import main
from ardistill.core.pairs_format import read_json
from ardistill.errors import PairsFileError, SettingsMismatch
from ardistill.pairs.config import GenOptions, PairsSettings, settings_from_identity
from ardistill.pairs.run import finalize, generate_pairs
from ardistill.pairs.verify import verify_pairs
from ardistill.teachers.base import SamplingConfig

VAR_ARGS = ["gen-pairs", "--teacher", "tiny_teachers:tiny_var", "--seed", "3", "--shard-size",
            "4", "--micro-batch", "2", "--batch-size", "2", "--no-progress"]


def _settings(**kw) -> PairsSettings:
    base = dict(num=10, seed=3, shard_size=4, micro_batch=2)
    base.update(kw)
    return PairsSettings(**base)


def _resume(tiny, root, spec="tiny-var", **kw):
    settings = _settings(**kw)
    return generate_pairs(tiny(spec), settings, root,
                          options=GenOptions(batch_size=settings.micro_batch, progress=False))


def test_kill_minus_nine_then_resume(tmp_path, cli_env, dataset_cache):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "ardistill", *VAR_ARGS, "--num", "24", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("shard-*.json"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done = len(list(out.glob("shard-*.json")))
    assert 2 <= done < 6
    res = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"({done} were already complete)" in res.stdout
    whole = dataset_cache("tiny-var", batch_size=2, num=24, seed=3, shard_size=4, micro_batch=2)
    assert verify_pairs(out).digest == verify_pairs(whole).digest


def test_resume_recomputes_partial_and_damaged_shards(var_copy, var_digest, tiny):
    (var_copy / "manifest.json").unlink()
    stale = var_copy / ".shard-000001.safetensors.tmp-host-123"
    stale.write_bytes(b"half a shard")
    (var_copy / "shard-000001.json").unlink()  # shard 1: file without its sidecar
    shard2 = var_copy / "shard-000002.safetensors"
    data = bytearray(shard2.read_bytes())
    data[-1] ^= 0xFF  # shard 2: corrupt file under a complete sidecar
    shard2.write_bytes(bytes(data))
    rep = _resume(tiny, var_copy)
    assert (rep.shards_done, rep.shards_skipped, rep.complete) == (2, 1, True)
    assert not stale.exists()
    assert verify_pairs(var_copy).digest == var_digest


def test_rerun_of_a_complete_dataset_changes_nothing(var_copy, tiny):
    before = (var_copy / "manifest.json").read_bytes()
    rep = _resume(tiny, var_copy)
    assert (rep.shards_done, rep.shards_skipped) == (0, 3)
    assert (var_copy / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("change, field", [
    (dict(seed=4), "generation.seed"),
    (dict(micro_batch=4), "generation.micro_batch"),
    (dict(threads=2), "generation.threads"),
    (dict(flow_steps=9), "flow.solver.num_steps"),
    (dict(classes=(0, 1)), "condition.classes"),
    (dict(sampling=SamplingConfig(cfg_scale=2.0, top_k=8, top_p=0.95)), "sampling.top_k"),
])
def test_other_settings_are_refused(var_copy, tiny, change, field):
    with pytest.raises(SettingsMismatch, match=field.replace(".", r"\.")):
        _resume(tiny, var_copy, **change)
    assert len(list(var_copy.glob("shard-*.safetensors"))) == 3


def test_other_teacher_or_foreign_folder_is_refused(var_copy, tiny, tmp_path):
    with pytest.raises(SettingsMismatch, match="teacher.fingerprint"):
        _resume(tiny, var_copy, spec="tiny-llamagen")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SettingsMismatch, match="not empty"):
        _resume(tiny, tmp_path)


def test_no_manifest_while_a_shard_is_missing(var_copy):
    ident = read_json(var_copy / "config.json", "config")
    (var_copy / "manifest.json").unlink()
    (var_copy / "shard-000001.json").unlink()
    with pytest.raises(PairsFileError, match="not written: shard 1: no sidecar"):
        finalize(var_copy, ident, settings_from_identity(ident), None)
    assert not (var_copy / "manifest.json").exists()


def test_cli_reports_the_mismatch(var_copy, capsys):
    argv = [*VAR_ARGS, "--num", "10", "--out", str(var_copy), "--top-k", "8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "sampling.top_k: recorded 16, now 8" in err


def test_cli_bad_classes_is_a_user_error(tmp_path, capsys):
    argv = [*VAR_ARGS, "--num", "4", "--out", str(tmp_path / "ds"), "--classes", "1,x"]
    assert main(argv) == 2
    assert "ardistill: error: --classes '1,x'" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
