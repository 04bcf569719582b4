"""FID: closed-form Gaussian cases, sampling consistency, torchmetrics parity, error cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ardistill.metrics.fid import fid_from_features, fid_to_stats, frechet_distance, gaussian_stats


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


METHODS = ("eigh", "sqrtm")


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_commuting_covariances(method):
    # Same eigenbasis: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    d = 6
    q = _rotation(d, 0)
    a = np.array([0.5, 1.0, 2.0, 3.0, 0.1, 4.0])
    b = np.array([1.5, 0.2, 2.0, 1.0, 0.3, 9.0])
    mu1, mu2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1] * 0.5
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_scaled_covariance_and_identity(method):
    # S2 = c^2 S1 (non-diagonal): trace term is (1 - c)^2 tr(S1); equal Gaussians give 0.
    rng = np.random.default_rng(1)
    m = rng.normal(size=(5, 5))
    s1 = m @ m.T + 0.1 * np.eye(5)
    mu = rng.normal(size=5)
    c = 2.5
    want = (1 - c) ** 2 * np.trace(s1)
    assert frechet_distance(mu, s1, mu, c**2 * s1, method=method) == pytest.approx(want)
    assert abs(frechet_distance(mu, s1, mu, s1, method=method)) < 1e-9


def test_methods_agree_on_non_commuting_covariances():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.01 * np.eye(8), b @ b.T
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    e = frechet_distance(mu1, s1, mu2, s2, method="eigh")
    q = frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    assert e == pytest.approx(q, rel=1e-9)
    # 1-D check of the non-trivial trace term: (sqrt(s1) - sqrt(s2))^2
    assert frechet_distance(np.zeros(1), [[4.0]], np.zeros(1), [[9.0]]) == pytest.approx(1.0)


def test_sampled_features_approach_closed_form():
    g = torch.Generator().manual_seed(0)
    n, d = 40_000, 4
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0 + 1.0
    want = d * 1.0 + d * (1.0 - 2.0) ** 2  # |mu|^2 + sum (1 - 2)^2
    assert fid_from_features(x, y) == pytest.approx(want, abs=0.1)


def test_gaussian_stats_match_numpy():
    f = torch.randn(50, 3, generator=torch.Generator().manual_seed(2))
    mu, sigma = gaussian_stats(f)
    assert np.allclose(mu, f.double().numpy().mean(0))
    assert np.allclose(sigma, np.cov(f.double().numpy(), rowvar=False))
    assert fid_to_stats(f, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_fid_equals_torchmetrics_on_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

    class Identity(torch.nn.Module):
        num_features = 16

        def forward(self, x):
            return x

    g = torch.Generator().manual_seed(3)
    real = torch.randn(300, 16, generator=g, dtype=torch.float64)
    fake = torch.randn(200, 16, generator=g, dtype=torch.float64) * 1.3 + 0.2
    ours = fid_from_features(real, fake)
    tm = FrechetInceptionDistance(feature=Identity())
    tm.set_dtype(torch.float64)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert float(tm.compute()) == pytest.approx(ours, rel=1e-6)
    stats = [torch.from_numpy(s) for s in (*gaussian_stats(real), *gaussian_stats(fake))]
    assert float(_compute_fid(*stats)) == pytest.approx(ours, rel=1e-9)
    assert ours > 1.0


def test_singular_covariances():
    # Fewer samples than dimensions: both covariances are singular (sqrtm's eps fallback path).
    g = torch.Generator().manual_seed(4)
    a = torch.randn(10, 32, generator=g)
    b = torch.randn(10, 32, generator=g) + 0.5
    e, q = fid_from_features(a, b), fid_from_features(a, b, method="sqrtm")
    assert np.isfinite(e) and e > 0
    assert e == pytest.approx(q, rel=1e-4)
    with pytest.raises(ValueError, match="method"):
        fid_from_features(a, b, method="svd")


def test_errors():
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


def test_fid_bootstrap_is_seeded_and_centred():
    from ardistill.metrics.fid import fid_bootstrap

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64)
    mu, sigma = np.zeros(6), np.eye(6)
    a = fid_bootstrap(x, mu, sigma, resamples=30, seed=1)
    b = fid_bootstrap(x, mu, sigma, resamples=30, seed=1)
    assert a.shape == (30,) and np.array_equal(a, b)
    assert not np.array_equal(a, fid_bootstrap(x, mu, sigma, resamples=30, seed=2))
    one = fid_to_stats(x, mu, sigma)
    assert abs(a.mean() - one) < 3 * a.std() + 0.05  # resamples scatter around the estimate
    with pytest.raises(ValueError, match="resamples"):
        fid_bootstrap(x, mu, sigma, resamples=1)
