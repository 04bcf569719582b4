"""A small MNIST classifier used as the feature network of the embedded default.

The FID Inception network knows ImageNet, not 32x32 digits; the embedded default measures FID,
precision/recall and IS with this CNN instead (trained by `ardistill zoo train-features`, its
weights ship in `ardistill/weights/mnist_features.safetensors`). Inputs are the embedded
image format (data/mnist.py): (N, 3, 32, 32) in [-1, 1] or uint8.

Architecture: stages of conv3x3 -> BatchNorm -> ReLU units with a 2x2 max pool between stages
(32 -> 16 -> 8 -> 4 pixels), a global average pool giving the features (the penultimate layer,
like Inception's pool_3), and a linear classifier giving the logits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.errors import CheckpointError
from ardistill.metrics.extractor import FeatureExtractor
from ardistill.utils.checkpoint import load_strict, read_state_dict
from ardistill.utils.images import from_uint8
from ardistill.utils.safetensors_io import save_safetensors


@dataclass(frozen=True)
class MnistNetConfig:
    """stages: output channels of the convs of each stage (a 2x2 max pool between stages); the
    last conv's channels are the feature dimension."""

    stages: tuple[tuple[int, ...], ...] = ((16,), (32, 32), (64,), (128,))
    num_classes: int = 10
    image_size: int = 32

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> MnistNetConfig:
        d = json.loads(text)
        return MnistNetConfig(
            stages=tuple(tuple(int(c) for c in st) for st in d["stages"]),
            num_classes=int(d["num_classes"]),
            image_size=int(d["image_size"]),
        )


class MnistFeatureNet(FeatureExtractor):
    """CNN classifier on (N, 3, 32, 32): features (N, channels[-1]), logits (N, num_classes)."""

    name = "mnist"
    labels_are_classes = True

    def __init__(self, config: MnistNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or MnistNetConfig()
        layers: list[nn.Module] = []
        cin = 3
        for i, stage in enumerate(self.config.stages):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for c in stage:
                layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                           nn.ReLU()]
                cin = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, self.config.num_classes)
        self.num_features = cin
        self.num_classes = self.config.num_classes

    def init_weights(self, generator: torch.Generator) -> None:
        """Seeded initialisation (no global RNG): Kaiming-normal convs, small linear head."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01, generator=generator)
        nn.init.zeros_(self.head.bias)

    def forward_float(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (N, 3, 32, 32) float in [-1, 1] -> features (N, F), logits (N, C). Trainable."""
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            raise ValueError(
                f"the MNIST feature network takes {size}x{size} images, got {tuple(x.shape)}"
            )
        feats = F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)  # (N, F)
        return feats, self.head(feats)

    def _forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        was_training = self.training
        self.eval()  # BN running statistics: a sample's features never depend on its batch
        try:
            return self.forward_float(from_uint8(images).to(self.head.weight.dtype))
        finally:
            self.train(was_training)


CONFIG_METADATA_KEY = "mnist_net_config"


def save_mnist_features(model: MnistFeatureNet, path: str | Path) -> Path:
    """Write the weights as safetensors, the config in the file's metadata."""
    path = Path(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors(sd, path, {CONFIG_METADATA_KEY: model.config.to_json()})


def _read_config(path: Path) -> MnistNetConfig:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_METADATA_KEY not in meta:
        raise CheckpointError(f"{path}: no '{CONFIG_METADATA_KEY}' metadata: not a file written "
                              "by `ardistill zoo train-features`")
    return MnistNetConfig.from_json(meta[CONFIG_METADATA_KEY])


def load_mnist_features(
    path: str | Path, *, device: torch.device | str = "cpu"
) -> MnistFeatureNet:
    """Load a feature network written by `save_mnist_features` (strict), in eval mode."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: the MNIST feature network is stored as .safetensors")
    sd = read_state_dict(path)
    model = MnistFeatureNet(_read_config(path))
    load_strict(model, sd, what="MNIST feature network")
    return model.eval().requires_grad_(False).to(device)
