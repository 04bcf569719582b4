"""Improved precision and recall (Kynkaanniemi et al. 2019), k-NN manifolds in feature space.

Each set's manifold is the union of balls around its points, the radius of a point being the
distance to its k-th nearest neighbour inside its own set (k = 3 as the paper and the ADM
evaluator; the point itself counts as the 0-th neighbour). precision = the fraction of
generated samples inside the real manifold; recall = the fraction of real samples inside the
generated manifold. Distances are computed in row chunks of at most `max_elements` entries, so
memory stays bounded for 50k x 50k sets; all comparisons use squared distances.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_MAX_ELEMENTS = 1 << 24  # 16M distances per chunk: 64 MiB in float32


def _sq_dists(a: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    """(A, F), (B, F), (B,) -> (A, B) squared Euclidean distances, clamped at 0."""
    a_sq = (a * a).sum(dim=1, keepdim=True)
    return (a_sq + b_sq[None, :] - 2.0 * (a @ b.T)).clamp_(min=0.0)


def _chunk_rows(n_cols: int, max_elements: int) -> int:
    return max(1, max_elements // max(1, n_cols))


def knn_sq_radii(features: Tensor, k: int = 3, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Tensor:
    """features: (N, F) -> (N,) squared distance of each point to its k-th nearest neighbour."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    f_sq = (features * features).sum(dim=1)
    step = _chunk_rows(n, max_elements)
    out = []
    for s in range(0, n, step):
        d = _sq_dists(features[s : s + step], features, f_sq)  # (chunk, N)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def manifold_coverage(
    query: Tensor, support: Tensor, support_sq_radii: Tensor,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> float:
    """Fraction of `query` (M, F) points inside some ball (support (N, F), squared radii (N,))."""
    s_sq = (support * support).sum(dim=1)
    step = _chunk_rows(support.shape[0], max_elements)
    inside = 0
    for s in range(0, query.shape[0], step):
        d = _sq_dists(query[s : s + step], support, s_sq)  # (chunk, N)
        inside += int((d <= support_sq_radii[None, :]).any(dim=1).sum())
    return inside / query.shape[0]


def precision_recall(
    real: Tensor,
    fake: Tensor,
    k: int = 3,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Improved precision and recall of `fake` (M, F) against `real` (N, F) features.

    dtype: compute dtype (float64 for exactness on small sets; float32 is the usual choice).
    device: where the distances are computed (default: where `real` lives).
    returns: (precision, recall), each in [0, 1].
    """
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be (N, F) and (M, F) with the same F, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    device = real.device if device is None else torch.device(device)
    real = real.detach().to(device=device, dtype=dtype)
    fake = fake.detach().to(device=device, dtype=dtype)
    r_real = knn_sq_radii(real, k, max_elements)
    r_fake = knn_sq_radii(fake, k, max_elements)
    precision = manifold_coverage(fake, real, r_real, max_elements)
    recall = manifold_coverage(real, fake, r_fake, max_elements)
    return precision, recall
