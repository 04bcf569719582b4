"""The pruned kernels run unpadded on the CPU (`ardistill.flow.kernels`): that is only sound if a
row's result is bitwise the same whatever block it shares, for every thread count."""

from __future__ import annotations

import pytest
import torch

import ardistill.flow.kernels as K
from ardistill.flow.solver import FlowMap


def _rows(n: int = 256, M: int = 64, d: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    y = 3 * torch.randn(n, d, generator=g, dtype=f64)
    Cs = torch.randn(n, M, d, generator=g, dtype=f64)
    lps = torch.log_softmax(3 * torch.randn(n, M, generator=g, dtype=f64), -1)
    lps[:, 5] = -torch.inf  # a zero-probability entry, as top-k leaves them
    Cs[:, 7] = Cs[:, 8]  # two identical entries (ignored by the certificate)
    rho = 20 * torch.rand(n, generator=g, dtype=f64)
    return y, Cs, lps, rho


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(64, 16), (37, 8)])
def test_pruned_kernels_are_row_invariant_for_any_block_size(threads, shape):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y, Cs, lps, rho = _rows(M=shape[0], d=shape[1])
        whole = [*K.pruned_denoiser(y, Cs, lps, rho), *K.collapse_margin(y, Cs, lps, rho)]
        for size in (1, 2, 3, 5, 8, 31, 33, 130, 255):
            for start in (0, 17, 256 - size):
                s = slice(start, start + size)
                part = [*K.pruned_denoiser(y[s], Cs[s], lps[s], rho[s]),
                        *K.collapse_margin(y[s], Cs[s], lps[s], rho[s])]
                for a, b in zip(whole, part):
                    assert torch.equal(a[s], b), (size, start)
    finally:
        torch.set_num_threads(old)


def test_blocks_pad_only_when_asked():
    rows = torch.arange(70)
    padded = K.blocks(rows, 32)
    assert [(ids.numel(), n) for ids, n in padded] == [(32, 32), (32, 32), (32, 6)]
    assert torch.equal(padded[-1][0][6:], torch.full((26,), 69))
    plain = K.blocks(rows, 32, pad=False)
    assert [(ids.numel(), n) for ids, n in plain] == [(32, 32), (32, 32), (6, 6)]
    assert torch.equal(torch.cat([ids for ids, _ in plain]), rows)


def test_pruned_blocks_are_unpadded_on_the_cpu_only():
    fm = FlowMap(torch.randn(300, 8))
    rows = torch.arange(5)
    assert [ids.numel() for ids, _ in fm.pruned_blocks(rows)] == [5]
    assert [ids.numel() for ids, _ in K.blocks(rows, fm.R)] == [fm.R]  # the GEMM's blocks
