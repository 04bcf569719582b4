"""Image metrics of a set of samples against a reference: the reusable entry point of `eval`.

`evaluate_images(samples, reference, extractor)` returns FID, Inception Score and improved
precision/recall in one dict. The reference is real images (an ADM-layout `.npz`, a directory
of PNGs, or the keyword `mnist` = the train split of the embedded data) and/or precomputed FID
statistics (`mu` / `sigma` inside an `.npz`, as the ADM evaluator's reference batches carry
them: those are used for FID, exactly as that evaluator does, and the images, when present,
for precision/recall). Compute the reference features once with `prepare_reference` when
several sample sets are compared with the same reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from ardistill.data.mnist import mnist_images
from ardistill.metrics import (
    FeatureExtractor,
    class_accuracy,
    extract,
    fid_bootstrap,
    fid_to_stats,
    gaussian_stats,
    inception_score,
    precision_recall,
)
from ardistill.utils.images import check_images, load_images, to_uint8

# Bootstrap resamples behind `fid_std`: 20 give the spread to about +-16% (relative).
FID_RESAMPLES = 20


@dataclass
class ImageReference:
    """Reference data: images (N, 3, H, W) uint8 and/or FID statistics mu (F,), sigma (F, F)."""

    name: str
    images: Tensor | None = None
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images is None and (self.mu is None or self.sigma is None):
            raise ValueError(f"reference {self.name!r}: needs images or both mu and sigma")
        if self.images is not None:
            check_images(self.images, f"reference {self.name!r} images")


@dataclass
class ReferenceFeatures:
    """A reference seen through one feature network (what `evaluate_images` needs)."""

    name: str
    extractor: str
    mu: np.ndarray  # (F,) float64
    sigma: np.ndarray  # (F, F) float64
    features: Tensor | None  # (N, F) float32; None when only statistics were given
    fid_source: str  # "images" or "stats"


def load_reference(spec: str | Path) -> ImageReference:
    """`mnist` (embedded train split), an `.npz` (`arr_0` images and/or `mu`, `sigma`), or a
    directory of PNGs."""
    if str(spec) == "mnist":
        images, _ = mnist_images("train")
        return ImageReference(name="mnist", images=to_uint8(images))
    path = Path(spec)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            mu = f["mu"].astype(np.float64) if "mu" in keys else None
            sigma = f["sigma"].astype(np.float64) if "sigma" in keys else None
        images = load_images(path)[0] if "arr_0" in keys else None
        if images is None and (mu is None or sigma is None):
            raise ValueError(f"{path}: neither images ('arr_0') nor FID statistics ('mu' and "
                             f"'sigma'); keys: {sorted(keys)}")
        return ImageReference(name=str(path), images=images, mu=mu, sigma=sigma)
    return ImageReference(name=str(path), images=load_images(path)[0])


def prepare_reference(
    reference: ImageReference,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> ReferenceFeatures:
    """Features and Gaussian statistics of a reference under `extractor`."""
    feats = None
    if reference.images is not None:
        feats, _ = extract(extractor, reference.images, batch_size=batch_size,
                           progress=progress, desc="reference features")
    if reference.mu is not None and reference.sigma is not None:
        mu, sigma = reference.mu, reference.sigma
        if mu.shape != (extractor.num_features,):
            raise ValueError(
                f"reference {reference.name!r}: its FID statistics are {mu.shape[0]}-d but the "
                f"{extractor.name!r} features are {extractor.num_features}-d (statistics of "
                "another feature network?)"
            )
        source = "stats"
    else:
        mu, sigma = gaussian_stats(feats)
        source = "images"
    return ReferenceFeatures(reference.name, extractor.name, mu, sigma, feats, source)


def evaluate_images(
    samples: Tensor,
    reference: ImageReference | ReferenceFeatures,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 256,
    is_splits: int = 10,
    pr_k: int = 3,
    fid_method: str = "eigh",
    progress: bool = False,
    labels: Tensor | None = None,
    fid_resamples: int = FID_RESAMPLES,
) -> dict:
    """FID (with its bootstrap spread), IS, precision/recall and class accuracy of `samples`
    against `reference` under `extractor`.

    samples: (N, 3, H, W) uint8 or float in [-1, 1]; labels: (N,) int64 requested classes
    (class accuracy when the extractor's logits are those classes, the MNIST net).
    fid_method: "eigh" or "sqrtm" (metrics.fid; equal up to rounding).
    fid_resamples: bootstrap resamples of the samples for `fid_std` (0: none; none either with
    fewer samples than feature dimensions).
    returns: {"features", "num_samples", "reference", "num_reference", "fid", "fid_std",
        "fid_resamples", "fid_reference", "fid_method", "inception_score",
        "inception_score_std", "is_splits", "precision", "recall", "pr_k", "class_accuracy"};
        IS is None without a classifier, precision/recall None without reference images or
        with fewer than pr_k + 1 images on a side, class_accuracy None without labels.
    """
    check_images(samples, "samples")
    if isinstance(reference, ImageReference):
        reference = prepare_reference(reference, extractor, batch_size=batch_size,
                                      progress=progress)
    if reference.extractor != extractor.name:
        raise ValueError(f"reference features come from {reference.extractor!r}, "
                         f"samples from {extractor.name!r}")
    feats, logits = extract(extractor, samples, batch_size=batch_size, progress=progress,
                            desc="sample features")
    n = feats.shape[0]
    out = {
        "features": extractor.name,
        "num_samples": n,
        "reference": reference.name,
        "num_reference": None if reference.features is None else reference.features.shape[0],
        "fid": fid_to_stats(feats, reference.mu, reference.sigma, method=fid_method),
        "fid_std": None,
        "fid_resamples": 0,
        "fid_reference": reference.fid_source,
        "fid_method": fid_method,
        "inception_score": None,
        "inception_score_std": None,
        "is_splits": None,
        "precision": None,
        "recall": None,
        "pr_k": pr_k,
        "class_accuracy": None,
    }
    if fid_resamples >= 2 and n > feats.shape[1]:  # below F samples the spread says nothing
        boot = fid_bootstrap(feats, reference.mu, reference.sigma, resamples=fid_resamples,
                             method=fid_method)
        out["fid_std"], out["fid_resamples"] = float(boot.std(ddof=1)), fid_resamples
    if labels is not None and logits is not None and extractor.labels_are_classes:
        out["class_accuracy"] = class_accuracy(logits, labels)
    if logits is not None:
        splits = min(is_splits, n)
        out["inception_score"], out["inception_score_std"] = inception_score(logits, splits)
        out["is_splits"] = splits
    ref_feats = reference.features
    if ref_feats is not None and min(n, ref_feats.shape[0]) > pr_k:
        out["precision"], out["recall"] = precision_recall(ref_feats, feats, k=pr_k,
                                                           device=extractor.device)
    return out
