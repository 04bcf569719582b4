"""Image tensors <-> uint8, PNG files, image grids and the ADM evaluator's `.npz` layout.

Conventions (the whole project):
- in memory, images are `(N, 3, H, W)`: float32 in [-1, 1] (what decoders return) or uint8;
- on disk, PNGs are RGB and an `.npz` holds `arr_0`: uint8 `(N, H, W, 3)` (the layout
  openai/guided-diffusion `evaluations/evaluator.py` reads) and, when labels are known,
  `arr_1`: int64 `(N,)` (the second positional array, as ADM's samplers save it).

Float -> uint8 rounds the way the common pipelines do (torchvision `save_image`, the LlamaGen /
DiT / ADM samplers): `floor(clamp(255 * x01 + 0.5, 0, 255))` with `x01 = (x + 1) / 2`, i.e.
`clamp(127.5 * x + 128, 0, 255)` truncated. Every metric converts float images this way first,
so an image scores the same in memory and after a round trip through a file.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ardistill.errors import DataFileError
from ardistill.utils.files import atomic_write_with

PNG_SUFFIXES = (".png",)


def to_uint8(images: Tensor, value_range: str = "-1,1") -> Tensor:
    """Float images -> uint8 with round-half-up, as `save_image` and the ADM-style samplers.

    images: (..., H, W) float in [-1, 1] (`value_range="-1,1"`) or [0, 1] (`"0,1"`); values
        outside are clamped. A uint8 tensor is returned unchanged.
    returns: same shape, uint8.
    """
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"to_uint8 expects float or uint8 images, got {images.dtype}")
    x = images.float()
    if value_range == "-1,1":
        x = x * 127.5 + 128.0  # == 255 * (x + 1) / 2 + 0.5
    elif value_range == "0,1":
        x = x * 255.0 + 0.5
    else:
        raise ValueError(f"value_range must be '-1,1' or '0,1', got {value_range!r}")
    return x.clamp_(0.0, 255.0).to(torch.uint8)  # truncation == floor on [0, 255]


def from_uint8(images: Tensor, value_range: str = "-1,1") -> Tensor:
    """uint8 images -> float32 in [-1, 1] (`v / 127.5 - 1`) or [0, 1] (`v / 255`); shape kept."""
    if images.dtype != torch.uint8:
        raise ValueError(f"from_uint8 expects uint8 images, got {images.dtype}")
    x = images.float()
    if value_range == "-1,1":
        return x / 127.5 - 1.0
    if value_range == "0,1":
        return x / 255.0
    raise ValueError(f"value_range must be '-1,1' or '0,1', got {value_range!r}")


def check_images(images: Tensor, name: str = "images") -> None:
    """Raise ValueError unless `images` is (N, 3, H, W) uint8 or floating point."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"{name} must be uint8 or float, got {images.dtype}")


def make_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> Tensor:
    """Tile images into one: (N, 3, H, W) uint8 or float [-1, 1] -> (3, H', W') uint8.

    nrow images per row; `padding` pixels of `pad_value` between and around tiles (the
    torchvision `make_grid` geometry).
    """
    check_images(images)
    images = to_uint8(images)
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    hh, ww = h + padding, w + padding
    grid = torch.full((c, rows * hh + padding, cols * ww + padding), pad_value, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = r * hh + padding, col * ww + padding
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write one image (3, H, W) uint8 or float [-1, 1] as an RGB PNG."""
    from PIL import Image

    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"save_png expects (3, H, W), got shape {tuple(image.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(image.detach().cpu()).permute(1, 2, 0).contiguous().numpy()
    # (H, W, 3) uint8 -> RGB, atomically (a full disk leaves no truncated PNG)
    atomic_write_with(path, lambda f: Image.fromarray(arr).save(f, format="PNG"))
    return path


def save_grid(images: Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """`make_grid` then `save_png`: (N, 3, H, W) -> one PNG."""
    return save_png(make_grid(images.detach().cpu(), nrow=nrow, padding=padding), path)


def save_pngs(images: Tensor, directory: str | Path, start: int = 0) -> list[Path]:
    """Write (N, 3, H, W) images as `directory/000000.png`, `000001.png`, ... (from `start`)."""
    check_images(images)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images = to_uint8(images.detach().cpu())
    return [save_png(img, directory / f"{start + i:06d}.png") for i, img in enumerate(images)]


def save_npz(path: str | Path, images: Tensor, labels: Tensor | None = None) -> Path:
    """Write images in the ADM evaluator layout: `arr_0` uint8 (N, H, W, 3), `arr_1` labels.

    images: (N, 3, H, W) uint8 or float [-1, 1]. labels: (N,) int64 or None.
    """
    check_images(images)
    arr = to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).contiguous().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [arr]
    if labels is not None:
        if labels.shape != (arr.shape[0],):
            raise ValueError(f"labels must be ({arr.shape[0]},), got {tuple(labels.shape)}")
        arrays.append(labels.detach().cpu().to(torch.int64).numpy())
    atomic_write_with(path, lambda f: np.savez(f, *arrays))  # never a partial file
    return path


def load_npz_images(path: str | Path) -> tuple[Tensor, Tensor | None]:
    """Read an ADM-layout `.npz`: -> (images (N, 3, H, W) uint8, labels (N,) int64 or None).

    `arr_0` must be uint8 (N, H, W, 3); `arr_1`, when present and (N,), is read as labels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f.files:
                raise ValueError(f"{path}: no 'arr_0' (images) in the npz; keys: {f.files}")
            arr = f["arr_0"]
            labels = f["arr_1"] if "arr_1" in f.files else None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataFileError(f"{path}: not a readable .npz file, truncated or corrupt ({e})") \
            from e
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"{path}: arr_0 must be uint8 (N, H, W, 3) images, got {arr.dtype} {arr.shape}"
        )
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    if labels is not None and labels.shape == (arr.shape[0],):
        return images, torch.from_numpy(labels.astype(np.int64))
    return images, None


def load_png_dir(directory: str | Path) -> Tensor:
    """Read every `*.png` in a directory (sorted by name) -> (N, 3, H, W) uint8 (RGB)."""
    from PIL import Image

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image directory not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in PNG_SUFFIXES)
    if not files:
        raise ValueError(f"{directory}: no .png files")
    arrs = []
    for p in files:
        try:
            with Image.open(p) as im:
                arrs.append(np.asarray(im.convert("RGB")))
        except OSError as e:  # PIL's UnidentifiedImageError and truncated files
            raise DataFileError(f"{p}: not a readable PNG ({e})") from e
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"{directory}: PNGs of different sizes {sorted(shapes)}")
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def load_images(path: str | Path) -> tuple[Tensor, Tensor | None]:
    """A samples file or folder: an ADM `.npz` or a directory of PNGs.

    returns: (images (N, 3, H, W) uint8, labels (N,) int64 or None).
    """
    path = Path(path)
    if path.is_dir():
        return load_png_dir(path), None
    if path.suffix == ".npz":
        return load_npz_images(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    raise ValueError(f"{path}: expected an .npz file or a directory of PNGs")
