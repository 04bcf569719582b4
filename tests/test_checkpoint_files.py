"""utils/checkpoint.read_file: clear errors for corrupt files and for files that need pickle."""

import pytest
import torch

from ardistill.errors import CheckpointError
from ardistill.utils.checkpoint import read_file, read_state_dict


def test_corrupt_legacy_file_is_a_checkpoint_error(tmp_path):
    p = tmp_path / "x.pth"
    torch.save({"a": torch.ones(3)}, p, _use_new_zipfile_serialization=False)
    b = bytearray(p.read_bytes())
    b[10:40] = b"\x00" * 30
    p.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        read_file(p)


def test_truncated_zip_file_is_a_checkpoint_error(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"a": torch.ones(1000)}, p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        read_file(p)


def test_wrappers_and_module_prefix(tmp_path):
    sd = {"w": torch.ones(2), "b": torch.zeros(1)}
    for i, obj in enumerate([sd, {"model": sd}, {"ema": sd, "args": 1},
                             {"state_dict": {f"module.{k}": v for k, v in sd.items()}}]):
        p = tmp_path / f"{i}.pt"
        torch.save(obj, p)
        got = read_state_dict(p)
        assert set(got) == {"w", "b"}, obj.keys()


def test_safetensors_files_are_byte_reproducible(tmp_path):
    """safetensors writes its metadata table in a randomised (Rust HashMap) order; our writer
    sorts it, so the same tensors and metadata always give the same bytes (and sha256)."""
    from safetensors import safe_open

    from ardistill.utils.safetensors_io import save_safetensors

    g = torch.Generator().manual_seed(0)
    tensors = {"b.weight": torch.randn(3, 5, generator=g).half(), "a": torch.arange(7),
               "c": torch.randn(2, generator=g)}
    meta = {f"key{i}": f"value {i}" for i in (5, 1, 7, 3, 0, 6, 2, 4)}
    blobs = set()
    for i in range(12):
        p = save_safetensors(tensors, tmp_path / f"{i}.safetensors", meta)
        blobs.add(p.read_bytes())
        assert (p.stat().st_mode & 0o777) == 0o644
    assert len(blobs) == 1
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == meta
        assert set(f.keys()) == set(tensors)
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


class _Payload:
    """A pickle that would run a command when loaded without the safe loader."""

    def __reduce__(self):
        import os

        return (os.system, ("echo this-must-never-run",))


def test_a_pickle_that_runs_code_is_refused_in_our_words(tmp_path, capfd):
    p = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "x": _Payload()}, p)
    with pytest.raises(CheckpointError) as info:
        read_file(p)
    text = str(info.value)
    assert "would run code" in text and "posix.system" in text and str(p) in text
    assert "weights_only" not in text and "False" not in text  # never torch's advice
    assert "this-must-never-run" not in capfd.readouterr().out
