"""Row-local kernels of the flow solver: posterior, denoiser, collapse certificate.

Variables of `ardistill.flow.posterior`: `rho = (1 - t) / t`, `y = x / t`; the posterior over
codebook entries is `log w_j = log p_j + rho <y, c_j> - rho^2 |c_j|^2 / 2 + const(row)`.

`full_posterior` (a GEMM) is called on blocks of exactly `R` rows (`blocks` pads the last one),
so the floating-point result for a row never depends on which other rows share its block: GEMM
results depend on the matrix shape, not on a row's position in it (measured for MKL on CPU,
`tests/flow/test_map.py::test_bitwise_row_invariance_of_state`). No kernel reduces across rows.
The pruned kernels (`pruned_denoiser`, `collapse_margin`) are elementwise ops plus reductions
over a row's own (M, d) entries, whose CPU loops depend on M and d only: on the CPU they run on
the rows that need them, unpadded (`blocks(..., pad=False)`; at batch 1 most of a padded block
was padding: 5x the work). Bitwise equal for any block size and thread count on the CPU
(`tests/flow/test_kernels.py::test_pruned_kernels_are_row_invariant_for_any_block_size`); CUDA
reductions pick their launch shape by size, so there every kernel keeps the padded blocks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def augment(y: Tensor, rho: Tensor, dtype: torch.dtype) -> Tensor:
    """[rho y, -rho^2 / 2] (R, d + 1) in `dtype`, from y (R, d) and rho (R,): with [C, |c|^2]^T
    the posterior logits are one GEMM (`full_posterior`, `flow.native`)."""
    r = rho.unsqueeze(1)
    return torch.cat([r * y, -0.5 * r * r], dim=1).to(dtype)


def full_posterior(y: Tensor, rho: Tensor, logp: Tensor, CaugT: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior over the whole codebook.

    y: (R, d) float64; rho: (R,) float64; logp: (R, V) and CaugT: (d + 1, V) = [C, |c|^2]^T,
    contiguous, in the compute dtype. Returns the denoiser D (R, d) float64 and the weights
    w (R, V).
    """
    # [rho y, -rho^2 / 2] @ [C, |c|^2]^T + log p: the posterior logits in one GEMM.
    w = torch.softmax(torch.addmm(logp, augment(y, rho, CaugT.dtype), CaugT), dim=-1)
    # D^T = C^T w^T: about 3x faster on CPU than the skinny w @ C (docs/flow.md, Speed).
    return (CaugT[:-1] @ w.T).T.double(), w


def pruned_logits(y: Tensor, Cs: Tensor, lps: Tensor, rho: Tensor) -> Tensor:
    """Unnormalised log weights over a row's own entries.

    y: (R, d), Cs: (R, M, d), lps: (R, M) log probs (-inf allowed), rho: (R,), all float64.
    Difference form `log p_j - |y - rho c_j|^2 / 2` (the expanded form minus a row constant):
    no cancellation at large rho, where only the nearest entries matter. Returns (R, M).
    """
    return lps - 0.5 * (y.unsqueeze(1) - rho.view(-1, 1, 1) * Cs).pow(2).sum(-1)


def pruned_denoiser(y: Tensor, Cs: Tensor, lps: Tensor, rho: Tensor) -> tuple[Tensor, Tensor]:
    """D (R, d) float64 over a row's own entries (shapes as `pruned_logits`), and the gap
    (R,) between the two largest log weights (inf with a single entry)."""
    E = pruned_logits(y, Cs, lps, rho)
    top = E.topk(min(2, E.shape[-1]), dim=-1).values
    gap = top[:, 0] - top[:, 1] if top.shape[-1] == 2 else torch.full_like(top[:, 0], math.inf)
    w = torch.softmax(E, dim=-1)
    return (w.unsqueeze(-1) * Cs).sum(1), gap


def collapse_margin(y: Tensor, Cs: Tensor, lps: Tensor, rho: Tensor) -> tuple[Tensor, Tensor]:
    """The winner k (R,) (index into M) and the smallest future log-weight gap (R,) float64.

    Once the posterior has collapsed onto k the denoiser stays c_k, so y(r) = y + (r - rho) c_k
    and every gap g_j(r) = E_k - E_j is a parabola in r: g' = (y - r c_j).(c_k - c_j),
    g'' = |c_k - c_j|^2. Its minimum over r >= rho is g_j when g_j' >= 0, else
    g_j - g_j'^2 / (2 |c_k - c_j|^2). When that minimum exceeds a margin T for every j, the
    other entries never regain weight above exp(-T): the token is k (the analytic final step).
    Entries with p_j = 0, or with c_j == c_k (indistinguishable by the flow), are ignored.
    """
    res = y.unsqueeze(1) - rho.view(-1, 1, 1) * Cs  # (R, M, d), shared by E and the slopes
    E = lps - 0.5 * res.pow(2).sum(-1)  # = pruned_logits(y, Cs, lps, rho), bit for bit
    k = E.argmax(-1)
    ck = Cs.gather(1, k.view(-1, 1, 1).expand(-1, 1, Cs.shape[-1]))  # (R, 1, d)
    gap = E.gather(1, k.view(-1, 1)) - E
    diff = ck - Cs
    dist2 = diff.pow(2).sum(-1)
    slope = (res * diff).sum(-1)
    dip = torch.where(slope < 0, slope * slope / (2 * dist2.clamp_min(1e-300)), 0.0)
    gmin = (gap - dip).masked_fill((dist2 == 0) | torch.isinf(lps), float("inf"))
    return k, gmin.min(-1).values


def blocks(rows: Tensor, R: int, pad: bool = True) -> list[tuple[Tensor, int]]:
    """Split row ids (n,) into blocks of exactly R ids, the last padded by repeating its last
    id (pad=False: the last block keeps its own size). Returns [(ids, n_valid)]."""
    out = []
    for s in range(0, rows.numel(), R):
        ids = rows[s : s + R]
        n = ids.numel()
        if n < R and pad:
            ids = torch.cat([ids, ids[-1:].expand(R - n)])
        out.append((ids, n))
    return out
