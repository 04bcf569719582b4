"""Frechet distance between Gaussian fits of two feature sets (FID, Heusel et al. 2017).

`FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`, in float64. Two ways to get the trace
of the matrix square root, equal up to rounding on well-conditioned inputs:
- "eigh" (default): `Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2)` (similar matrices),
  the sum of the square roots of the eigenvalues of a symmetric PSD matrix. Two symmetric
  eigendecompositions: several times faster than sqrtm at 2048 dimensions, no imaginary part,
  and exact for singular covariances (eigenvalues are clipped at 0, no regulariser needed).
- "sqrtm": the standard implementations' path (pytorch-fid, the ADM evaluator):
  `scipy.linalg.sqrtm(S1 S2)`; when the result is not finite both covariances get `eps` added
  to the diagonal; a complex result whose imaginary diagonal exceeds 1e-3 is an error,
  otherwise the real part is kept. Use it to reproduce those tools to the last digits.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor


def _as_f64(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def gaussian_stats(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features: (N, F), N >= 2 -> mu (F,) float64, sigma (F, F) float64 (ddof=1, as np.cov)."""
    f = _as_f64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, F) with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr (s1 s2)^(1/2) for symmetric PSD s1, s2 via S1^(1/2) S2 S1^(1/2) (float64; torch's
    LAPACK, about twice as fast as numpy's here)."""
    a, b = torch.from_numpy(s1), torch.from_numpy(s2)
    try:
        w, v = torch.linalg.eigh((a + a.T) / 2)
    except torch.linalg.LinAlgError:  # rank-deficient (few samples): numpy's driver copes
        w, v = (torch.from_numpy(x) for x in np.linalg.eigh((s1 + s1.T) / 2))
    root = (v * w.clamp(min=0.0).sqrt()) @ v.T  # S1^(1/2)
    m = root @ b @ root
    try:
        ev = torch.linalg.eigvalsh((m + m.T) / 2)
    except torch.linalg.LinAlgError:
        ev = torch.from_numpy(np.linalg.eigvalsh(((m + m.T) / 2).numpy()))
    return float(ev.clamp(min=0.0).sqrt().sum())


def _trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """Tr (s1 s2)^(1/2) exactly as pytorch-fid / the ADM evaluator compute it."""
    from scipy import linalg

    with warnings.catch_warnings():
        # scipy warns on singular input; the standard code (sqrtm(..., disp=False)) is silent
        # and decides on finiteness alone, as here.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            # Singular product: regularise as pytorch-fid / ADM do.
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"FID: matrix square root has a large imaginary component {imag:g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    method: str = "eigh",
    eps: float = 1e-6,
) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2): mu (F,), sigma (F, F) -> float.

    method: "eigh" (default) or "sqrtm" (see the module docstring); eps: sqrtm's regulariser.
    """
    mu1, mu2 = _as_f64(mu1, "mu1").ravel(), _as_f64(mu2, "mu2").ravel()
    s1, s2 = np.atleast_2d(_as_f64(sigma1, "sigma1")), np.atleast_2d(_as_f64(sigma2, "sigma2"))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"statistics of different dimensions: mu1 {mu1.shape}, sigma1 {s1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {s2.shape} (features of different networks?)"
        )
    diff = mu1 - mu2
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    elif method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(s1, s2, eps)
    else:
        raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_features(
    a: Tensor | np.ndarray, b: Tensor | np.ndarray, *, method: str = "eigh"
) -> float:
    """FID of two feature sets: a (N, F), b (M, F) -> float."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b), method=method)


def fid_to_stats(
    features: Tensor | np.ndarray, mu: np.ndarray, sigma: np.ndarray, *, method: str = "eigh"
) -> float:
    """FID of a feature set (N, F) against precomputed statistics (the ADM `mu` / `sigma`)."""
    return frechet_distance(*gaussian_stats(features), mu, sigma, method=method)


def fid_bootstrap(
    features: Tensor | np.ndarray, mu: np.ndarray, sigma: np.ndarray, *, resamples: int = 20,
    seed: int = 0, method: str = "eigh",
) -> np.ndarray:
    """FIDs of `resamples` bootstrap resamples of `features` (N, F) against (mu, sigma): rows
    drawn with replacement by `numpy.random.default_rng(seed)`. Their standard deviation is the
    sampling noise of an FID over N samples: two sample sets whose FIDs differ by much less than
    it cannot be told apart. Meaningful for N well above the feature dimension F.
    -> (resamples,) float64."""
    f = _as_f64(features, "features")
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, f.shape[0], size=f.shape[0])
        out[r] = frechet_distance(*gaussian_stats(f[idx]), mu, sigma, method=method)
    return out


__all__ = ["gaussian_stats", "frechet_distance", "fid_bootstrap", "fid_from_features",
           "fid_to_stats"]
