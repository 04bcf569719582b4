"""Evaluation math: tensors in, numbers out (no file I/O, no global RNG).

- feature networks behind one interface (`extractor.FeatureExtractor`): the FID Inception
  (`inception.load_inception`, weights supplied by the user) and the embedded MNIST CNN
  (`mnist_net.load_mnist_features`);
- FID and its bootstrap spread (`fid`), class accuracy (`extractor.class_accuracy`),
  Inception Score (`inception_score`), improved precision/recall
  (`precision_recall`), token agreement and bits per token (`tokens`).
"""

from ardistill.metrics.extractor import FeatureExtractor, class_accuracy, extract
from ardistill.metrics.fid import (
    fid_bootstrap,
    fid_from_features,
    fid_to_stats,
    frechet_distance,
    gaussian_stats,
)
from ardistill.metrics.inception_score import inception_score
from ardistill.metrics.precision_recall import precision_recall
from ardistill.metrics.tokens import bits_per_token, token_agreement, token_agreement_per_position

__all__ = [
    "FeatureExtractor",
    "class_accuracy",
    "extract",
    "fid_bootstrap",
    "fid_from_features",
    "fid_to_stats",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "precision_recall",
    "bits_per_token",
    "token_agreement",
    "token_agreement_per_position",
]
