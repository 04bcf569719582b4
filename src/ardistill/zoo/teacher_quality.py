"""Quality and speed of an embedded teacher, measured on the embedded MNIST data.

- tokenizer: reconstruction error of the held-out digits (MSE, PSNR), FID of the
  reconstructions against the train split, the feature network's accuracy on them, and how
  much of the codebook the train split uses;
- teacher samples: FID against the train split and against the held-out split, precision /
  recall, the feature network's accuracy on the requested class ("recognisability"), and how
  many samples are exact token copies of a training image;
- speed: seconds per image at batch 1 (AR sampling + VQ decoding) and images per second at a
  large batch.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ardistill.data.mnist import mnist_images
from ardistill.metrics import (
    FeatureExtractor,
    extract,
    fid_from_features,
    inception_score,
    precision_recall,
)
from ardistill.teachers.base import Condition, MultinomialChooser, SamplingConfig, Teacher, decode
from ardistill.zoo.families import FamilyOps
from ardistill.zoo.train_teacher import tokenize


@dataclass
class DataFeatures:
    """Feature-network view of the embedded data, computed once per evaluation."""

    train: Tensor  # (4500, F) float32
    heldout: Tensor  # (500, F) float32

    @staticmethod
    def compute(extractor: FeatureExtractor) -> DataFeatures:
        return DataFeatures(extract(extractor, mnist_images("train")[0])[0],
                            extract(extractor, mnist_images("heldout")[0])[0])


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """(n,) int64 labels 0, 1, ..., C-1, 0, 1, ... (uniform over the classes)."""
    return torch.arange(n) % num_classes


@torch.no_grad()
def sample_teacher(
    teacher: Teacher,
    labels: Tensor,
    sampling: SamplingConfig,
    *,
    seed: int,
    batch_size: int = 500,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Ordinary multinomial sampling (one seeded generator for the whole set).

    labels: (N,) int64, or a Condition of N rows (caption features of a text-conditional
    teacher). returns: tokens (N, L) int64, images (N, 3, H, W) float32 in [-1, 1].
    """
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    toks, imgs = [], []
    conds = labels if isinstance(labels, Condition) else Condition(labels=labels)
    for s in tqdm(range(0, len(conds), batch_size), desc="sample teacher", disable=not progress):
        cond = conds[s : s + batch_size]
        t = decode(teacher, cond, sampling, MultinomialChooser(g))
        toks.append(t)
        imgs.append(teacher.decode_tokens(t).clamp(-1.0, 1.0))
    return torch.cat(toks), torch.cat(imgs)


def image_quality(images: Tensor, labels: Tensor, extractor: FeatureExtractor,
                  data: DataFeatures) -> dict:
    """FID (vs train / held-out), precision / recall (vs train), IS, accuracy on `labels`."""
    feats, logits = extract(extractor, images)
    precision, recall = precision_recall(data.train, feats)
    return {
        "n": len(images),
        "fid_train": fid_from_features(feats, data.train),
        "fid_heldout": fid_from_features(feats, data.heldout),
        "precision": precision,
        "recall": recall,
        "inception_score": inception_score(logits)[0],
        "accuracy": float((logits.argmax(1) == labels).double().mean()),
    }


def copies_of_training_tokens(samples: Tensor, train_tokens: Tensor) -> float:
    """Fraction of (N, L) sampled token sequences equal to some (M, L) training sequence."""
    seen = {tuple(row) for row in train_tokens.tolist()}
    return sum(tuple(row) in seen for row in samples.tolist()) / max(1, len(samples))


@torch.no_grad()
def tokenizer_quality(ops: FamilyOps, tok: nn.Module, extractor: FeatureExtractor,
                      data: DataFeatures, codebook_size: int) -> dict:
    """Reconstruction of the held-out digits and codebook use on the train split."""
    held, held_y = mnist_images("heldout")
    train, train_y = mnist_images("train")
    recon = ops.decode(tok, ops.encode(tok, held)).clamp(-1.0, 1.0)
    mse = float((recon - held).pow(2).mean())
    train_tokens, _ = tokenize(ops, tok, train, train_y)
    counts = torch.bincount(train_tokens.reshape(-1), minlength=codebook_size)
    p = counts.double() / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    q = image_quality(recon, held_y, extractor, data)
    return {
        "heldout_mse": mse,  # images in [-1, 1]
        "heldout_psnr_db": 10.0 * torch.log10(torch.tensor(4.0 / mse)).item(),
        "heldout_l1": float((recon - held).abs().mean()),
        "recon_fid_train": q["fid_train"],
        "recon_accuracy": q["accuracy"],
        "codes_used": int((counts > 0).sum()),
        "codebook_size": codebook_size,
        "code_perplexity": perplexity,
    }


@torch.no_grad()
def seconds_per_image(teacher: Teacher, sampling: SamplingConfig, *, repeats: int = 5,
                      seed: int = 0, conditions=None) -> dict:
    """Median wall time of one image at batch 1: AR sampling, and VQ decoding, separately
    (one warm-up run first)."""
    g = torch.Generator().manual_seed(seed)
    ar, dec = [], []
    for i in range(repeats + 1):
        cond = teacher.sample_conditions(1, g) if conditions is None else conditions(1)
        t0 = time.perf_counter()
        tokens = decode(teacher, cond, sampling, MultinomialChooser(g))
        t1 = time.perf_counter()
        teacher.decode_tokens(tokens)
        t2 = time.perf_counter()
        if i > 0:
            ar.append(t1 - t0)
            dec.append(t2 - t1)
    return {"ar_seconds": statistics.median(ar), "decode_seconds": statistics.median(dec),
            "seconds_per_image": statistics.median(a + d for a, d in zip(ar, dec)),
            "repeats": repeats, "threads": torch.get_num_threads()}


@torch.no_grad()
def images_per_second(teacher: Teacher, sampling: SamplingConfig, *, batch_size: int = 256,
                      seed: int = 0, conditions=None) -> float:
    """AR sampling + decoding throughput at one large batch."""
    g = torch.Generator().manual_seed(seed)
    cond = (teacher.sample_conditions(batch_size, g) if conditions is None
            else conditions(batch_size))
    t0 = time.perf_counter()
    teacher.decode_tokens(decode(teacher, cond, sampling, MultinomialChooser(g)))
    return batch_size / (time.perf_counter() - t0)
