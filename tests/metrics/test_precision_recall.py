"""Improved precision / recall on point clouds with known answers; chunking invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from ardistill.metrics.precision_recall import knn_sq_radii, manifold_coverage, precision_recall


def _cloud(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_sets_are_one_one():
    x = _cloud(200)
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)


def test_far_disjoint_sets_are_zero_zero():
    x = _cloud(200)
    assert precision_recall(x, _cloud(150, seed=1) + 1000.0, k=3) == (0.0, 0.0)


def test_half_of_fake_off_manifold():
    real = _cloud(300)
    fake = torch.cat([real[:100], _cloud(100, seed=2) + 1000.0])
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == pytest.approx(0.5)
    # the real points near the first 100 fakes are covered, the rest far from any fake ball
    assert 0.0 < recall < 1.0


def test_shift_lowers_precision_monotonically():
    real = _cloud(400, d=4)
    ps = [precision_recall(real, _cloud(400, d=4, seed=3) + s, k=3)[0] for s in (0.0, 1.0, 3.0)]
    assert ps[0] > ps[1] > ps[2]
    assert ps[0] > 0.9 and ps[2] < 0.1


def test_radii_match_brute_force_and_chunking_is_invisible():
    x = _cloud(120, d=5, seed=4)
    d2 = cdist(x.numpy(), x.numpy(), "sqeuclidean")
    want = np.sort(d2, axis=1)[:, 3]  # index 0 is the point itself
    got_big = knn_sq_radii(x, k=3)
    got_small = knn_sq_radii(x, k=3, max_elements=7)  # one row per chunk
    assert np.allclose(got_big.numpy(), want, rtol=1e-9, atol=1e-9)
    assert torch.allclose(got_big, got_small, rtol=1e-12, atol=1e-12)
    q = _cloud(90, d=5, seed=5)
    assert manifold_coverage(q, x, got_big) == manifold_coverage(q, x, got_big, max_elements=1)


def test_errors():
    with pytest.raises(ValueError, match="same F"):
        precision_recall(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="k must be"):
        knn_sq_radii(torch.zeros(3, 2), k=3)
