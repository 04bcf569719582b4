"""Feature networks by name: "mnist" (shipped, `ardistill.weights`) or "inception" (the
official pt_inception weights, from a local file: never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

from ardistill.metrics.extractor import FeatureExtractor
from ardistill.metrics.inception import load_inception
from ardistill.metrics.mnist_net import load_mnist_features
from ardistill.weights import FEATURES, FEATURES_RECORD, shipped_json, shipped_path

FEATURE_NETWORKS = ("mnist", "inception")


def mnist_features_path() -> Path:
    """The safetensors file of the MNIST feature network that ships with ardistill."""
    return shipped_path(FEATURES, "MNIST feature network",
                        "rebuild it with `ardistill zoo train-features`")


def mnist_features_record() -> dict:
    """The JSON record (recipe, accuracy, reference outputs) of the shipped network."""
    return shipped_json(FEATURES_RECORD)


def load_feature_extractor(
    name: str,
    *,
    inception_weights: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> FeatureExtractor:
    """A feature network by name: "mnist" (shipped) or "inception" (needs its weights file)."""
    if name == "mnist":
        return load_mnist_features(mnist_features_path(), device=device)
    if name == "inception":
        return load_inception(inception_weights, device=device)
    raise ValueError(f"unknown feature network {name!r}; choose one of {FEATURE_NETWORKS}")
