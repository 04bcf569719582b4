"""The FID Inception network: official key layout, strict loading, resize, forward contract.

The real weights cannot be downloaded here; random weights saved in the official layout stand
in for them. The layout is pinned by facts independent of our code: the parameter count of
torchvision's Inception-v3 without its auxiliary head (23,834,568) plus the 1008-class fc
(+16,392), 472 tensors, and key shapes from the public TF -> PyTorch conversion table.
"""

from __future__ import annotations

import pytest
import torch

from ardistill.errors import CheckpointError
from ardistill.metrics.inception import (
    InceptionV3FID,
    load_inception,
    tf1_resize,
    tf1_resize_matrix,
)
from ardistill.utils.checkpoint import count_parameters

OFFICIAL_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch_pool.conv.weight": (192, 1280, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def official_sd() -> dict[str, torch.Tensor]:
    """Random weights in the official file's layout (no num_batches_tracked, plain dict)."""
    g = torch.Generator().manual_seed(0)
    model = InceptionV3FID()
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("conv.weight"):
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        else:
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
    return sd


def test_layout_matches_the_official_file(official_sd):
    model = InceptionV3FID()
    assert count_parameters(model) == 23_834_568 + 8 * 2048 + 8
    assert len(official_sd) == 94 * 5 + 2
    for k, shape in OFFICIAL_SHAPES.items():
        assert tuple(official_sd[k].shape) == shape, k


def test_strict_round_trip_and_forward(official_sd, tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(official_sd, path)
    model = load_inception(path)
    for k, v in official_sd.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert len(model.weights_sha256) == 64 and model.weights_sha256 != "6726825d"
    images = torch.randint(0, 256, (2, 3, 40, 40), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    feats, logits = model.features_and_logits(images)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    # IS logits are unbiased (torch-fidelity "logits_unbiased", ADM evaluator)
    assert torch.allclose(logits, feats @ official_sd["fc.weight"].T, rtol=1e-5, atol=1e-4)
    # by hand: TF1 resize, (x - 128) / 128, pool_3
    x = (tf1_resize(images.float(), 299) - 128.0) / 128.0
    assert torch.allclose(model.pool3(x), feats, rtol=1e-5, atol=1e-5)


def test_file_with_num_batches_tracked_loads(tmp_path):
    model = InceptionV3FID()
    path = tmp_path / "with_nbt.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    assert load_inception(path).fc.weight.shape == (1008, 2048)


def test_wrong_files_are_errors(official_sd, tmp_path):
    missing = dict(official_sd)
    del missing["Mixed_6e.branch_pool.bn.running_var"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="Mixed_6e.branch_pool.bn.running_var"):
        load_inception(tmp_path / "missing.pth")

    imagenet_fc = dict(official_sd, **{"fc.weight": torch.zeros(1000, 2048),
                                       "fc.bias": torch.zeros(1000)})
    torch.save(imagenet_fc, tmp_path / "torchvision.pth")
    with pytest.raises(CheckpointError, match=r"fc\.(weight|bias).*\(1000"):
        load_inception(tmp_path / "torchvision.pth")

    aux = dict(official_sd, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)})
    torch.save(aux, tmp_path / "aux.pth")
    with pytest.raises(CheckpointError, match="AuxLogits"):
        load_inception(tmp_path / "aux.pth")

    with pytest.raises(CheckpointError, match="pt_inception-2015-12-05"):
        load_inception(None)
    with pytest.raises(CheckpointError, match="not found"):
        load_inception(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk\n")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_inception(tmp_path / "junk.pth")


def test_tf1_resize_semantics():
    # 2 -> 4: source coordinates 0, 0.5, 1, 1.5 (no half-pixel centres; clamped at the edge)
    m = tf1_resize_matrix(2, 4)
    assert m.tolist() == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]]
    x = torch.randn(1, 2, 5, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = tf1_resize(x, 9)
    # one output pixel by hand: (i, j) = (4, 6) -> source (4 * 5/9, 6 * 7/9)
    sy, sx = 4 * 5 / 9, 6 * 7 / 9
    y0, x0 = int(sy), int(sx)
    fy, fx = sy - y0, sx - x0
    want = ((1 - fy) * (1 - fx) * x[..., y0, x0] + (1 - fy) * fx * x[..., y0, x0 + 1]
            + fy * (1 - fx) * x[..., y0 + 1, x0] + fy * fx * x[..., y0 + 1, x0 + 1])
    assert torch.allclose(y[..., 4, 6], want)
    for n_in, n_out in ((5, 9), (256, 299), (299, 128)):
        assert torch.allclose(tf1_resize_matrix(n_in, n_out).sum(1), torch.ones(n_out).double())
    sq = torch.randn(1, 3, 299, 299, dtype=torch.float64)
    assert torch.equal(tf1_resize(sq, 299), sq)


@pytest.mark.slow  # 2048-d FID and Inception forwards on CPU: about a minute on 2 busy cores
def test_eval_cli_with_inception_features(official_sd, tmp_path, capsys):
    import json

    from ardistill.cli import main
    from ardistill.utils.images import save_npz, save_pngs

    torch.save(official_sd, tmp_path / "random_inception.pth")
    g = torch.Generator().manual_seed(3)
    imgs = torch.randint(0, 256, (6, 3, 24, 24), generator=g, dtype=torch.uint8)
    save_npz(tmp_path / "samples.npz", imgs[:3])
    save_pngs(imgs[3:], tmp_path / "ref")
    rc = main(["eval", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "ref"),
               "--features", "inception", "--inception-weights",
               str(tmp_path / "random_inception.pth"), "--pr-k", "2", "--no-progress"])
    assert rc == 0
    # not the official file: the user is told the numbers are not comparable
    assert "not the official" in capsys.readouterr().err
    r = json.loads((tmp_path / "samples.eval.json").read_text())
    assert r["features"] == "inception" and r["num_reference"] == 3
    assert r["fid"] > 0 and r["inception_score"] >= 1.0 and r["is_splits"] == 3
    assert 0.0 <= r["precision"] <= 1.0 and len(r["inception_weights_sha256"]) == 64
