"""Image conversions, PNGs, grids and the ADM `.npz` layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ardistill.utils.images import (
    from_uint8,
    load_images,
    load_npz_images,
    load_png_dir,
    make_grid,
    save_grid,
    save_npz,
    save_pngs,
    to_uint8,
)


def _rand_u8(n=5, h=8, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def test_to_uint8_rounds_like_save_image_and_the_adm_samplers():
    x01 = torch.tensor([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 254.4 / 255, 254.6 / 255, 1.0, 1.3])
    # torchvision save_image: mul(255).add_(0.5).clamp_(0, 255).to(uint8)
    want = x01.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    assert to_uint8(x01, "0,1").tolist() == want.tolist() == [0, 0, 0, 1, 128, 254, 255, 255, 255]
    # LlamaGen / DiT samplers on [-1, 1]: clamp(127.5 x + 128, 0, 255).to(uint8)
    xm = torch.linspace(-1.2, 1.2, 1001)
    assert torch.equal(to_uint8(xm), torch.clamp(127.5 * xm + 128.0, 0, 255).to(torch.uint8))


def test_uint8_float_round_trip_is_exact():
    v = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(from_uint8(v)), v)
    assert torch.equal(to_uint8(from_uint8(v, "0,1"), "0,1"), v)
    assert from_uint8(v)[0] == -1.0 and from_uint8(v)[-1] == 1.0
    with pytest.raises(ValueError, match="value_range"):
        to_uint8(torch.zeros(2), "0,255")


def test_png_round_trip(tmp_path):
    imgs = _rand_u8()
    paths = save_pngs(imgs, tmp_path / "pngs")
    assert [p.name for p in paths] == [f"{i:06d}.png" for i in range(5)]
    assert torch.equal(load_png_dir(tmp_path / "pngs"), imgs)
    loaded, labels = load_images(tmp_path / "pngs")
    assert torch.equal(loaded, imgs) and labels is None
    # float input is rounded exactly as to_uint8
    f = from_uint8(imgs) + 0.001
    save_pngs(f, tmp_path / "f")
    assert torch.equal(load_png_dir(tmp_path / "f"), to_uint8(f))


def test_npz_round_trip_in_adm_layout(tmp_path):
    imgs, labels = _rand_u8(), torch.tensor([3, 1, 4, 1, 5])
    path = save_npz(tmp_path / "samples.npz", imgs, labels)
    with np.load(path) as f:
        assert f["arr_0"].shape == (5, 8, 6, 3) and f["arr_0"].dtype == np.uint8
        assert f["arr_1"].tolist() == [3, 1, 4, 1, 5]
        assert np.array_equal(f["arr_0"][2], imgs[2].permute(1, 2, 0).numpy())
    back, back_labels = load_npz_images(path)
    assert torch.equal(back, imgs) and torch.equal(back_labels, labels)
    save_npz(tmp_path / "nolabels.npz", imgs)
    assert load_images(tmp_path / "nolabels.npz")[1] is None


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="arr_0"):
        load_npz_images(tmp_path / "stats.npz")
    np.savez(tmp_path / "float.npz", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_npz_images(tmp_path / "float.npz")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="labels"):
        save_npz(tmp_path / "x.npz", _rand_u8(), torch.zeros(4, dtype=torch.long))


def test_grid_geometry(tmp_path):
    imgs = _rand_u8(n=5, h=8, w=6)
    grid = make_grid(imgs, nrow=3, padding=2)
    assert grid.shape == (3, 2 * 10 + 2, 3 * 8 + 2)
    assert torch.equal(grid[:, 2:10, 2:8], imgs[0])
    assert torch.equal(grid[:, 12:20, 10:16], imgs[4])  # row 1, column 1
    assert (grid[:, 12:20, 18:24] == 0).all()  # the empty sixth tile
    save_grid(imgs, tmp_path / "grid.png", nrow=3)
    assert torch.equal(load_png_dir(tmp_path)[0], grid)
