"""One small interface for the feature networks behind FID, IS and precision/recall.

A `FeatureExtractor` is an `nn.Module` (eval mode, no gradients) with
- `features(images) -> (N, F) float32`: the embedding FID and precision/recall use;
- `logits(images) -> (N, C) float32`: class logits for the Inception Score (`num_classes` is
  None when the network has no classifier);
- `num_features` (torchmetrics reads this name when handed a custom feature module).

Images are (N, 3, H, W): uint8 0..255, or float in [-1, 1], which is first rounded to uint8
exactly as a PNG/npz writer does (`utils.images.to_uint8`), so the same sample scores the same
whether it comes from memory or from a file.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from ardistill.utils.images import check_images, to_uint8


class FeatureExtractor(nn.Module, abc.ABC):
    """Base class: subclasses implement `_forward(uint8 images) -> (features, logits | None)`."""

    name: str = "features"
    num_features: int
    num_classes: int | None = None
    # True when logit k is the class id k of the generator's labels (the MNIST net: digit k);
    # not for Inception, whose 1008 outputs are not ImageNet label ids.
    labels_are_classes: bool = False

    @abc.abstractmethod
    def _forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """images: (N, 3, H, W) uint8 on the module's device -> ((N, F), (N, C) or None)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _prepare(self, images: Tensor) -> Tensor:
        check_images(images)
        return to_uint8(images).to(self.device)

    @torch.no_grad()
    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """One pass: (N, 3, H, W) -> features (N, F) float32, logits (N, C) float32 or None."""
        feats, logits = self._forward(self._prepare(images))
        return feats.float(), None if logits is None else logits.float()

    def features(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 or float [-1, 1] -> (N, num_features) float32."""
        return self.features_and_logits(images)[0]

    def logits(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 or float [-1, 1] -> (N, num_classes) float32."""
        if self.num_classes is None:
            raise ValueError(f"feature network {self.name!r} has no classifier (no logits)")
        return self.features_and_logits(images)[1]

    def forward(self, images: Tensor) -> Tensor:
        # torchmetrics calls the module itself and expects the features.
        return self.features(images)


def extract(
    extractor: FeatureExtractor,
    images: Tensor,
    *,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "features",
) -> tuple[Tensor, Tensor | None]:
    """Batched `features_and_logits` over a large set, results on the CPU.

    images: (N, 3, H, W) uint8 or float [-1, 1], any device (batches move to the extractor's).
    returns: features (N, F) float32, logits (N, C) float32 or None.
    """
    check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    feats, logits = [], []
    starts = range(0, images.shape[0], batch_size)
    for s in tqdm(starts, desc=desc, disable=not progress, leave=False):
        f, lg = extractor.features_and_logits(images[s : s + batch_size])
        feats.append(f.cpu())
        if lg is not None:
            logits.append(lg.cpu())
    if not feats:
        raise ValueError("extract: no images")
    return torch.cat(feats), (torch.cat(logits) if logits else None)


def class_accuracy(logits: Tensor, labels: Tensor) -> float:
    """The fraction of samples the classifier reads as their requested class.
    logits: (N, C) float; labels: (N,) int64 in [0, C), or -1 for a sample that requested no
    class (a prompt naming no digit): those are left out (NaN when no sample is left)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits (N, C) and labels (N,) needed, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels outside [0, {logits.shape[1]}): not class ids of this "
                         "classifier")
    labels = labels.cpu()
    keep = labels >= 0
    if not bool(keep.any()):
        return float("nan")
    return float((logits.argmax(-1).cpu()[keep] == labels[keep]).double().mean())
