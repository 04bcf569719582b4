"""The FID Inception network: the 2015-12-05 TensorFlow Inception-v3 graph, as PyTorch modules.

This is the network behind every published FID / IS / precision-recall number: the TF graph
`classify_image_graph_def.pb` (inception-2015-12-05) that the ADM evaluator runs, ported to
PyTorch by pytorch-fid / torch-fidelity as `pt_inception-2015-12-05-6726825d.pth`. We write
the architecture ourselves with the module names of that file, and load the file STRICTLY:
every key and shape must match (472 tensors: 94 conv + batch-norm units, `fc` with 1008
classes; optional `num_batches_tracked` buffers are ignored). There is no built-in default and
nothing downloads: the user supplies the file.

Differences from torchvision's Inception3 that the TF graph needs (hence the FID-specific
blocks): average pools in the A/C/E blocks exclude the padding, the last E block pools with a
max pool, BN eps is 1e-3, 1008 output classes, no auxiliary head.

Input pipeline (as the TF graph / torch-fidelity): uint8 -> float, bilinear resize to 299x299
with TensorFlow 1.x semantics (`align_corners=False`, no half-pixel centres), then
`(x - 128) / 128`. Features: the 2048-d average pool (`pool_3`). Logits for the Inception
Score: `pool_3 @ fc.weight.T` WITHOUT the bias, as torch-fidelity ("logits_unbiased") and the
ADM evaluator compute them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.errors import CheckpointError
from ardistill.metrics.extractor import FeatureExtractor
from ardistill.utils.checkpoint import load_strict, read_state_dict

INPUT_SIZE = 299
NUM_CLASSES = 1008
NUM_FEATURES = 2048
OFFICIAL_FILE = "pt_inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"  # torch.hub convention: the file name carries it
OFFICIAL_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + OFFICIAL_FILE
)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, the TF graph's) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: Tensor) -> Tensor:
    # TF's 3x3 average pool averages over the valid pixels only.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 35x35 grid."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Mixed_6a: 35x35 -> 17x17."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """Mixed_6b..6e: 17x17 grid with factorised 7x7 convolutions."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([self.branch1x1(x), b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Mixed_7a: 17x17 -> 8x8."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Mixed_7b (average pool branch) and Mixed_7c (max pool branch, as in the TF graph)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(h), self.branch3x3_2b(h)], 1)
        h = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(h), self.branch3x3dbl_3b(h)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


def tf1_resize_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) float64 weights of TF 1.x bilinear resize along one axis.

    TF1 `resize_bilinear(align_corners=False)` samples source coordinate `o * n_in / n_out`
    (no half-pixel centre), interpolating between floor and floor + 1 (clamped at the edge).
    """
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo.double()
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m


def tf1_resize(x: Tensor, size: int) -> Tensor:
    """(N, C, H, W) float -> (N, C, size, size), TF 1.x bilinear (see `tf1_resize_matrix`)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    mh = tf1_resize_matrix(h, size).to(x)
    mw = tf1_resize_matrix(w, size).to(x)
    return torch.einsum("oh,nchw,pw->ncop", mh, x, mw)


class InceptionV3FID(FeatureExtractor):
    """The FID Inception-v3 (pool_3 features, 2048-d; 1008-class unbiased logits)."""

    name = "inception"
    num_features = NUM_FEATURES
    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(NUM_FEATURES, NUM_CLASSES)
        self.weights_sha256: str | None = None  # set by load_inception
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionV3FID:
        # Always inference: BN uses the TF graph's moving statistics.
        return super().train(False)

    def pool3(self, x: Tensor) -> Tensor:
        """x: (N, 3, 299, 299) float in [-1, 1] -> (N, 2048) pool_3 features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)  # (N, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = F.max_pool2d(x, 3, stride=2)  # (N, 192, 35, 35)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)  # ... -> (N, 2048, 8, 8)
        return x.mean(dim=(2, 3))

    def _forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        dtype = self.fc.weight.dtype
        x = tf1_resize(images.to(dtype), INPUT_SIZE)  # (N, 3, 299, 299), still 0..255
        x = (x - 128.0) / 128.0
        feats = self.pool3(x)
        return feats, feats @ self.fc.weight.T  # unbiased logits, as torch-fidelity / ADM


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_inception(
    path: str | Path | None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> InceptionV3FID:
    """Build the FID Inception and load `path` (e.g. pt_inception-2015-12-05-6726825d.pth).

    Strict: every tensor of the file must match by name and shape (a torchvision ImageNet
    Inception or any other file is rejected with the offending keys named). No default: a
    missing path is an error. `weights_sha256` records the file's digest; the official file's
    starts with 6726825d.
    """
    if path is None:
        raise CheckpointError(
            "the FID Inception network needs its weights file, which ardistill never downloads: "
            f"get {OFFICIAL_FILE} ({OFFICIAL_URL}) on a machine with internet access and pass "
            "its path (--inception-weights PATH)"
        )
    try:
        sd = read_state_dict(path)
    except CheckpointError:
        raise
    except Exception as e:  # a corrupt file can fail deep inside the unpickler (KeyError, ...)
        raise CheckpointError(f"{path}: not a readable torch checkpoint "
                              f"({type(e).__name__}: {e})") from e
    model = InceptionV3FID()
    load_strict(
        model,
        sd,
        what=f"FID Inception-v3 ({OFFICIAL_FILE} layout)",
        transient=[r".*\.num_batches_tracked"],
    )
    model.weights_sha256 = file_sha256(path)
    return model.to(device=device, dtype=dtype)
