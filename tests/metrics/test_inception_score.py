"""Inception Score: uniform vs confident predictions, splits, torchmetrics parity."""

from __future__ import annotations

import pytest
import torch

from ardistill.metrics.inception_score import inception_score


def test_uniform_predictions_score_one():
    mean, std = inception_score(torch.zeros(100, 10), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_one_hot_predictions_score_num_classes():
    c, n = 10, 1000
    labels = torch.arange(n) % c  # in order, every split of 100 holds each class 10 times
    logits = torch.nn.functional.one_hot(labels, c).double() * 1000.0
    mean, std = inception_score(logits, splits=10, shuffle_seed=None)
    assert mean == pytest.approx(c, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    # shuffled splits hold the classes only roughly evenly: a little below C
    assert 9.0 < inception_score(logits, splits=10)[0] < c


def test_one_class_scores_one_and_class_sorted_sets_are_shuffled():
    # All samples confidently one class: p(y) is that class, KL = 0.
    logits = torch.zeros(20, 5)
    logits[:, 2] = 50.0
    assert inception_score(logits, splits=4)[0] == pytest.approx(1.0, abs=1e-9)
    # A class-sorted set: unshuffled, each of ten splits sees one class only (score 1); the
    # default fixed-seed shuffle restores a score near 10.
    sorted_logits = torch.nn.functional.one_hot(torch.arange(1000) // 100, 10).double() * 100
    assert inception_score(sorted_logits, splits=1)[0] == pytest.approx(10.0)
    assert inception_score(sorted_logits, splits=10, shuffle_seed=None)[0] == pytest.approx(1.0)
    assert inception_score(sorted_logits, splits=10)[0] > 9.0
    assert inception_score(sorted_logits, splits=10) == inception_score(sorted_logits, splits=10)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchmetrics: feature buffer, std of 1 split
def test_equals_torchmetrics_with_one_split():
    from torchmetrics.image.inception import InceptionScore

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    logits = torch.randn(400, 12, generator=torch.Generator().manual_seed(0)) * 3
    tm = InceptionScore(feature=Identity(), splits=1)
    tm.update(logits)
    tm_mean, _ = tm.compute()
    assert inception_score(logits, splits=1)[0] == pytest.approx(float(tm_mean), rel=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(5, 3), splits=6)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        inception_score(torch.zeros(5))
