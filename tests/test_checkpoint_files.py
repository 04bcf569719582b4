"""utils/checkpoint.read_file: clear errors for corrupt files and for files that need pickle."""

import pytest
import torch

from ardistill.utils.checkpoint import CheckpointError, read_file, read_state_dict


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
