"""Perceptual losses on decoded images for the continuous head (method.md §5).

The decode must carry gradients to the student's latents, but `Teacher.decode_latents` runs
under `no_grad` (it is an inference API), so `decode_with_grad` calls the same family decoder
modules directly. The decoder's own weights are frozen (`requires_grad_(False)`): the teacher is
never trained.

Choices (LossConfig.perceptual):
- "pixel-l1" / "pixel-l2": mean |x - y| / (x - y)^2 over pixels in [-1, 1]; no weights at all;
- "mnist": squared distance of the shipped MNIST feature network's pooled features (the FID
  features of the embedded default; its weights ship with ardistill);
- "lpips": LPIPS (Zhang et al. 2018, the "vgg" v0.1 variant) with our own VGG16 feature stack:
  the user supplies a torchvision-layout VGG16 state dict (`features.N.weight|bias`; any
  `classifier.*` is ignored) and the LPIPS linear layers (`lin{0..4}.model.1.weight`,
  (1, C, 1, 1)). Both load strictly; nothing downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.errors import CheckpointError
from ardistill.metrics.mnist_net import load_mnist_features
from ardistill.metrics.networks import mnist_features_path
from ardistill.teachers.base import Teacher
from ardistill.training.config import LossConfig
from ardistill.utils.checkpoint import load_strict, read_state_dict


def decode_with_grad(teacher: Teacher, x: Tensor) -> Tensor:
    """(B, N, d) codebook-space vectors -> (B, 3, H, W) float32, differentiable in x.
    Same computation as `teacher.decode_latents` (family decoders, frozen)."""
    if teacher.family == "llamagen":
        vq = teacher.vq
        vq.requires_grad_(False)
        b, n, d = x.shape
        g = teacher.layout.grid
        z = x.to(teacher.vq_device, teacher.vq_dtype).reshape(b, g, g, d).permute(0, 3, 1, 2)
        return vq.decode(z.contiguous()).float()
    if teacher.family == "var":
        vae = teacher.vqvae
        vae.requires_grad_(False)
        f_hat = vae.quantize.vectors_to_fhat(x.to(teacher.device).float())
        return vae.fhat_to_img(f_hat)
    raise ValueError(f"no differentiable decoder for the teacher family {teacher.family!r}")


# ------------------------------------------------------------------------------- LPIPS

# VGG16 `features` indices: conv layers, with "M" for max-pooling; LPIPS taps relu1_2,
# relu2_2, relu3_3, relu4_3, relu5_3 (the ReLU after the conv at these indices).
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # index (in torchvision's `features`) of the tapped ReLUs
_LPIPS_CH = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    """torchvision's `vgg16().features` up to relu5_3, same module indices (keys)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out


class LPIPS(nn.Module):
    """LPIPS distance, images (B, 3, H, W) in [-1, 1] -> (B,) float32."""

    def __init__(self) -> None:
        super().__init__()
        self.net = VGG16Features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_CH)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for a, b, lin in zip(fx, fy, self.lins):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)  # unit-normalise channels
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


def load_lpips(vgg_path: str | Path, linear_path: str | Path,
               device: torch.device | str = "cpu") -> LPIPS:
    """LPIPS with user-supplied weights, both loaded strictly (module docstring)."""
    for p, what in ((vgg_path, "VGG16"), (linear_path, "LPIPS linear")):
        if not Path(p).is_file():
            raise CheckpointError(f"{what} weights file not found: {p} (LPIPS needs local "
                                  "files; nothing is downloaded)")
    model = LPIPS()
    vgg = {k: v for k, v in read_state_dict(vgg_path).items() if not k.startswith("classifier.")}
    load_strict(model.net, vgg, what=f"VGG16 features ({vgg_path})")
    lin = {k.replace(".model.1.", ".").replace("lin", "", 1): v
           for k, v in read_state_dict(linear_path).items()}
    load_strict(model.lins, lin, what=f"LPIPS linear layers ({linear_path})")
    return model.to(device).eval().requires_grad_(False)


# ------------------------------------------------------------------------------- dispatch


def _shipped_mnist_features(device: torch.device) -> nn.Module:
    return load_mnist_features(mnist_features_path(), device=device).eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """Per-example perceptual distance: pred, target (B, 3, H, W) in [-1, 1] -> (B,)."""

    def __init__(self, cfg: LossConfig, device: torch.device) -> None:
        super().__init__()
        self.kind = cfg.perceptual
        self.net: nn.Module | None = None
        if self.kind == "mnist":
            self.net = _shipped_mnist_features(device)
        elif self.kind == "lpips":
            self.net = load_lpips(cfg.lpips_vgg, cfg.lpips_linear, device)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.kind == "pixel-l1":
            return (pred - target).abs().flatten(1).mean(1)
        if self.kind == "pixel-l2":
            return (pred - target).pow(2).flatten(1).mean(1)
        if self.kind == "mnist":
            size = self.net.config.image_size
            fp, _ = self.net.forward_float(interpolate_to(pred, size))
            ft, _ = self.net.forward_float(interpolate_to(target, size))
            return (fp - ft).pow(2).mean(1)
        if self.kind == "lpips":
            return self.net(pred, target)
        raise ValueError(f"no perceptual loss {self.kind!r}")


def interpolate_to(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of (B, 3, H, W) to size x size (no-op when equal)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
