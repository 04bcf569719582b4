"""The CPU fast paths of the solver: flushing subnormals is scoped to the solve, and the
prune count is exact (also at subnormal weights and weights equal to the threshold)."""

from __future__ import annotations

import torch

from ardistill.flow import map_noise_to_tokens
from ardistill.flow.solver import _count_above, _flush_denormal_is_on, flush_denormals


def test_flush_denormals_is_scoped_and_restores_the_callers_setting():
    assert not _flush_denormal_is_on()
    with flush_denormals():
        assert _flush_denormal_is_on()
    assert not _flush_denormal_is_on()
    with flush_denormals(enabled=False):
        assert not _flush_denormal_is_on()
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            assert _flush_denormal_is_on()
        assert _flush_denormal_is_on()  # the caller had it on: left on
    finally:
        torch.set_flush_denormal(False)
    # an exception inside still restores
    try:
        with flush_denormals():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not _flush_denormal_is_on()


def test_solve_leaves_flush_denormal_off():
    g = torch.Generator().manual_seed(0)
    C = torch.randn(300, 4, generator=g)
    probs = torch.softmax(3 * torch.randn(16, 300, generator=g), -1)
    map_noise_to_tokens(torch.randn(16, 4, generator=g), probs, C)
    assert not _flush_denormal_is_on()


def test_count_above_is_exact():
    thr = 1e-6 / 16384
    g = torch.Generator().manual_seed(0)
    w = torch.softmax(40 * torch.randn(8, 4096, generator=g), -1)  # many subnormal weights
    w[0, :5] = thr
    w[1, :5] = torch.nextafter(torch.tensor(thr, dtype=torch.float32), torch.tensor(1.0))
    w[2, :5] = 1e-40  # subnormal
    assert int(((w > 0) & (w < 1.2e-38)).sum()) > 1000
    for ftz in (False, True):
        with flush_denormals(ftz):
            got = _count_above(w.clone(), thr)
        assert torch.equal(got.long(), (w > thr).sum(-1)), ftz
