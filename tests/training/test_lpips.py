"""LPIPS (our implementation) loads user-given weight files strictly; nothing downloads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ardistill.errors import CheckpointError
from ardistill.training.config import LossConfig
from ardistill.training.perceptual import VGG16Features, load_lpips


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    vgg = {k: v.contiguous() for k, v in VGG16Features().state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier
    save_file(vgg, str(d / "vgg16.safetensors"))
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
           for i, c in enumerate((64, 128, 256, 512, 512))}
    save_file(lin, str(d / "lin.safetensors"))
    return d / "vgg16.safetensors", d / "lin.safetensors"


def test_lpips_distance(weight_files):
    model = load_lpips(*weight_files)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-6)
    d = model(x, y)
    assert d.shape == (2,) and bool((d > 0).all())
    assert not any(p.requires_grad for p in model.parameters())


def test_lpips_files_are_required_and_strict(weight_files, tmp_path):
    with pytest.raises(ValueError, match="lpips_vgg"):
        LossConfig(perceptual="lpips", perceptual_weight=1.0)
    with pytest.raises(CheckpointError, match="not found"):
        load_lpips(tmp_path / "missing.pth", weight_files[1])
    with pytest.raises(CheckpointError, match="LPIPS linear"):
        load_lpips(weight_files[0], weight_files[0])  # the VGG file where the linear belongs
