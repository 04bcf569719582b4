"""`flow.native`: the compiled full-codebook posterior kernel against the PyTorch path, its row
invariance, its fallback, and the flow map through it."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

import ardistill.flow.kernels as K
from ardistill.flow import FlowMap, FlowSolverConfig, native
from ardistill.flow.reference import FlowSetting, make_flow_problem, reference_solve
from ardistill.flow.solver import _Chunk, _count_above, entries_above, flush_denormals

SMALL_LLAMAGEN = FlowSetting("small-llamagen", 1024, 8, 500, normalize=True)
SMALL_VAR = FlowSetting("small-var", 512, 32, 200, normalize=False, norm_spread=0.3)
ODD = FlowSetting("odd-dims", 264, 5, 0, normalize=False, norm_spread=0.3)  # k1 = 6: generic


@pytest.fixture
def kernel():
    """The kernel must build wherever a C compiler is on PATH (CI's machines have one)."""
    native.reset()
    if shutil.which("cc") is None:
        assert not native.available()
        pytest.fail("no C compiler here: the native kernel tests need one")
    assert native.available(), native._state.get("why")
    return native


@pytest.mark.parametrize("setting", [SMALL_LLAMAGEN, SMALL_VAR, ODD], ids=lambda s: s.name)
def test_kernel_matches_the_pytorch_posterior(kernel, setting):
    noise, probs, C = make_flow_problem(setting, 40, 2.0, seed=1)
    probs[:4] = 0.0
    probs[:4, :3] = torch.tensor([0.5, 0.3, 0.2])  # rows with a tiny support
    fm = FlowMap(C, use_native=False)
    logp = probs.log()
    packed = kernel.pack_codebook(fm.CaugT)
    for rho_s in (0.0, 0.7, 3.0, 9.0):
        rho = torch.full((40,), rho_s / fm.tv.scale, dtype=torch.float64)
        y = noise.double() + rho[:, None] * C.double()[probs.argmax(-1)]
        D, w = K.full_posterior(y, rho, logp, fm.CaugT)
        yaug = kernel.augment(y, rho)
        rows = torch.arange(40)
        D2, mz, lb = kernel.posterior_sums(yaug, logp, rows, packed, 1e-4)
        scale = C.double().abs().max()
        assert (D2 - D).abs().max() <= 2e-5 * scale
        assert torch.allclose(mz[:, 1].reciprocal(), w.amax(-1), rtol=1e-5, atol=1e-7)
        # the pruning pass with M = V: every row's exact count and entries above thr
        cnt, idx = kernel.posterior_prune(yaug, logp, rows, packed, mz, 1e-4, C.shape[0])
        want = _count_above(w, 1e-4)
        assert (cnt - want).abs().max() <= 1  # a near-tie at most
        same = cnt == want
        assert torch.equal(idx[same], entries_above(w[same], 1e-4, C.shape[0]))
        assert bool((lb <= cnt).all())  # a lower bound
        assert bool((lb > 0).any()) or rho_s == 0.0
        # with a small M: rows over it stop early (cnt > M), the others as above
        M = 6
        cnt6, idx6 = kernel.posterior_prune(yaug, logp, rows, packed, mz, 1e-4, M)
        assert torch.equal(cnt6 > M, cnt > M)
        ok = cnt <= M
        assert torch.equal(cnt6[ok], cnt[ok]) and torch.equal(idx6[ok], idx[ok][:, :M])
        assert bool((idx6[ok][probs[ok].gather(1, idx6[ok].clamp(min=0)) == 0] == -1).all())


def test_kernel_rows_do_not_depend_on_the_rows_around_them(kernel):
    noise, probs, C = make_flow_problem(SMALL_VAR, 37, 2.0, seed=2)
    fm = FlowMap(C, use_native=False)
    logp, packed = probs.log(), kernel.pack_codebook(fm.CaugT)
    rho = torch.linspace(0.0, 2.0, 37, dtype=torch.float64)
    yaug = kernel.augment(noise.double(), rho)
    D, mz, lb = kernel.posterior_sums(yaug, logp, torch.arange(37), packed, 1e-6)
    for i in (0, 17, 36):
        d1, m1, l1 = kernel.posterior_sums(yaug[i : i + 1], logp, torch.tensor([i]), packed, 1e-6)
        assert torch.equal(d1[0], D[i]) and torch.equal(m1[0], mz[i]) and l1[0] == lb[i]
    perm = torch.randperm(37, generator=torch.Generator().manual_seed(0))
    dp, mp, _ = kernel.posterior_sums(yaug[perm], logp, perm, packed, 1e-6)  # rows by index
    assert torch.equal(dp, D[perm]) and torch.equal(mp, mz[perm])


def test_kernel_calls_split_over_torch_threads_give_the_same_bits(kernel, monkeypatch):
    """Rows split over torch's OpenMP team: every output bitwise that of one thread, also for
    a row whose weights are subnormal without flush-to-zero (the workers take the caller's
    FP control word), and the whole map's tokens and trajectories."""
    assert kernel._state["lib"].ardistill_team, "torch's OpenMP runtime was not found"
    noise, probs, C = make_flow_problem(SMALL_LLAMAGEN, 40, 2.0, seed=3)
    C[5] = torch.eye(C.shape[1])[0]
    fm = FlowMap(C, use_native=False)
    logp, packed = probs.log(), kernel.pack_codebook(fm.CaugT)
    # the last row (a worker's part): entry 5 on top, the others' weights e^-87.25 times their
    # coordinates subnormal: its denoiser's coordinates 1.. are 0 only when those are flushed
    logp[-1] = -87.25
    logp[-1, 5] = 0.0
    rho = torch.linspace(0.0, 3.0, 40, dtype=torch.float64)
    rho[-1] = 0.0
    yaug, rows = kernel.augment(noise.double(), rho), torch.arange(40)
    pr = _pruned_problem()

    def outputs():
        sums = kernel.posterior_sums(yaug, logp, rows, packed, 1e-6)
        prune = kernel.posterior_prune(yaug, logp, rows, packed, sums[1], 1e-6, 64)
        return (*sums, *prune, *kernel.pruned_denoiser(*pr), *kernel.collapse_margin(*pr),
                kernel.log(probs))

    monkeypatch.setattr(kernel, "MIN_WORK", 1)  # split even these small calls
    before = torch.get_num_threads()
    try:
        with flush_denormals():
            torch.set_num_threads(1)
            one = outputs()
            torch.set_num_threads(2)
            assert kernel.threads_for(40, 1) == 2
            two = outputs()
        torch.set_num_threads(1)
        no_ftz = outputs()
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    assert bool((one[0][-1, 1:] == 0).all()) and bool((no_ftz[0][-1, 1:] != 0).any())
    # the map: the same tokens and trajectories at 1 and 2 threads
    noise, probs, C = make_flow_problem(SMALL_LLAMAGEN, 64, 1.0, seed=4)
    fm = FlowMap(C)
    res = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            res.append(fm.solve(noise, probs))
    finally:
        torch.set_num_threads(before)
    for f in ("tokens", "full_evals", "pruned_evals", "rho_end", "rho_prune"):
        assert torch.equal(getattr(res[0], f), getattr(res[1], f))


@pytest.mark.parametrize("setting", [SMALL_LLAMAGEN, SMALL_VAR, ODD], ids=lambda s: s.name)
@pytest.mark.parametrize("threads", [1, 2])
def test_step_loop_in_c_gives_the_python_loops_floats(kernel, setting, threads):
    """`native_loop` (each step and decision in C) against the Python loop around the same
    kernels: every field bitwise, on rows that prune at the start (one-hot, a tiny support),
    flat and peaked rows, and a config whose hard stop decides rows by force."""
    noise, probs, C = make_flow_problem(setting, 96, 1.0, seed=5)
    probs[48:] = make_flow_problem(setting, 48, 4.5, seed=6)[1]
    probs[:3] = 0.0
    probs[0, 7] = 1.0
    probs[1, :3] = torch.tensor([0.5, 0.3, 0.2])
    probs[2, 2:5] = torch.tensor([0.2, 0.3, 0.5])
    configs = [FlowSolverConfig(), FlowSolverConfig(num_steps=4, rho_max=12.0, prune_size=16)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for cfg in configs:
            chunks = []
            for loop in (False, True):
                ch = _Chunk(FlowMap(C, cfg, native_loop=loop), noise, probs)
                with flush_denormals():
                    ch.run()
                chunks.append(ch)
            a, b = chunks
            for f in ("y", "tokens", "full_evals", "pruned_evals", "rho_end", "rho_prune"):
                assert torch.equal(getattr(a, f), getattr(b, f)), f
            assert bool((b.tokens >= 0).all())
            assert bool((probs.gather(1, b.tokens.unsqueeze(1)) > 0).all())
    finally:
        torch.set_num_threads(before)
    # the second config's hard stop (rho s = 12) decided many rows at its last node by force
    last = float(b.rho_end.max())
    assert last <= 12.0 and int((b.rho_end == last).sum()) >= 10


def test_entries_above_pads_with_minus_one():
    x = torch.tensor([[0.1, 0.5, 0.0, 0.7, 0.2], [0.9, 0.0, 0.0, 0.0, 0.05]])
    assert entries_above(x, 0.15, 3).tolist() == [[1, 3, 4], [0, -1, -1]]


def _pruned_problem(B=40, M=48, d=8, V=300, seed=0):
    """(rows, y, rho, C64, idx, lps) for the pruned kernels; Cs = C64[idx] for PyTorch's."""
    g = torch.Generator().manual_seed(seed)
    C64 = torch.randn(V, d, generator=g, dtype=torch.float64)
    idx = torch.randint(0, V, (B, M), generator=g)
    idx[:, 7] = idx[:, 3]  # two equal entries (indistinguishable by the flow)
    lps = torch.log_softmax(3 * torch.randn(B, M, generator=g, dtype=torch.float64), -1)
    lps[:, 5] = -math.inf  # padding (`entries_above`'s -1)
    idx[:, 5] = 0
    lps[11, 1:] = -math.inf  # a row with one entry
    rows = torch.tensor([11, 3, 0, 39, 3, 20, 21, 22])
    y = 3 * torch.randn(rows.numel(), d, generator=g, dtype=torch.float64)
    rho = torch.tensor([0.5, 2.0, 10.0, 100.0, 3.0, 30.0, 7.0, 1e3], dtype=torch.float64)
    return rows, y, rho, C64, idx, lps


def test_pruned_kernels_match_the_pytorch_ones(kernel):
    rows, y, rho, C64, idx, lps = _pruned_problem()
    Cs = C64[idx]
    D, gap = kernel.pruned_denoiser(rows, y, rho, C64, idx, lps)
    D2, gap2 = K.pruned_denoiser(y, Cs[rows], lps[rows], rho)
    assert torch.allclose(D, D2, rtol=1e-12, atol=1e-12)
    assert torch.allclose(gap, gap2, rtol=1e-10) and gap[0] == math.inf
    k, margin = kernel.collapse_margin(rows, y, rho, C64, idx, lps)
    k2, margin2 = K.collapse_margin(y, Cs[rows], lps[rows], rho)
    assert torch.equal(k, k2)
    assert torch.allclose(margin, margin2, rtol=1e-10) and margin[0] == math.inf
    assert bool((margin[1:] < math.inf).all()) and bool((margin > 20).any())
    # one row at a time: the same bits (a row's result depends on its own entries only)
    for i in range(rows.numel()):
        one = kernel.pruned_denoiser(rows[i : i + 1], y[i : i + 1], rho[i : i + 1], C64, idx,
                                     lps)
        assert torch.equal(one[0][0], D[i]) and torch.equal(one[1][0], gap[i])
    with pytest.raises(ValueError, match="row ids"):
        kernel.pruned_denoiser(torch.tensor([40]), y[:1], rho[:1], C64, idx, lps)
    with pytest.raises(ValueError, match="float64"):
        kernel.collapse_margin(rows, y, rho, C64.float(), idx, lps)
    bad = idx.clone()
    bad[0, 0] = 300
    with pytest.raises(ValueError, match="entry indices"):
        kernel.pruned_denoiser(rows, y, rho, C64, bad, lps)


def test_log_is_torch_log_with_zeros_and_subnormals_at_minus_inf(kernel):
    x = torch.cat([torch.rand(1000) ** 8, torch.tensor([0.0, 1e-40, 1.1754944e-38, 1.0, 0.5])])
    got, want = kernel.log(x), x.log()
    normal = x >= torch.finfo(torch.float32).tiny
    assert torch.allclose(got[normal], want[normal], rtol=3e-7, atol=3e-7)
    assert bool((got[~normal] == -math.inf).all())
    assert kernel.log(x[:5]).shape == (5,) and kernel.log(x[:0]).numel() == 0
    out = torch.empty_like(x)
    assert kernel.log(x, out=out) is out and torch.equal(out, got)
    with pytest.raises(ValueError, match="out"):
        kernel.log(x, out=torch.empty(3))
    # counts above a cut in chosen rows (the start-of-flow pruning reads them from log p)
    rows = torch.rand(6, 64) ** 4
    cnt = kernel.count_above(rows, torch.tensor([5, 0, 2]), 0.3)
    assert torch.equal(cnt, (rows[[5, 0, 2]] > 0.3).sum(-1).float())


@pytest.mark.parametrize("setting", [SMALL_LLAMAGEN, SMALL_VAR], ids=lambda s: s.name)
@pytest.mark.parametrize("logit_std", [1.0, 4.5], ids=["flat", "peaked"])
def test_flow_map_through_the_kernel_agrees(kernel, setting, logit_std):
    """The same tokens as the PyTorch path (floats differ by rounding) and the reference's."""
    noise, probs, C = make_flow_problem(setting, 150, logit_std, seed=11)
    fast = FlowMap(C, use_native=True)
    assert fast.packed is not None
    got = fast.solve(noise, probs)
    plain = FlowMap(C, use_native=False).solve(noise, probs)
    assert int((got.tokens != plain.tokens).sum()) <= 1
    ref = reference_solve(noise, probs, C).tokens
    assert int((got.tokens != ref).sum()) <= 1
    # row invariance of the whole solve through the kernel
    for i in (0, 149):
        one = fast.solve(noise[i : i + 1], probs[i : i + 1])
        assert float(one.rho_end[0]) == float(got.rho_end[i])
        assert int(one.full_evals[0]) == int(got.full_evals[i])


def test_fallback_without_the_kernel(monkeypatch, tmp_path):
    """No compiler, or ARDISTILL_NATIVE=0: `available()` is False, FlowMap keeps the PyTorch
    path (use_native=True says why it cannot), and the tokens are unchanged."""
    noise, probs, C = make_flow_problem(SMALL_VAR, 20, 1.0, seed=3)
    plain = FlowMap(C, use_native=False)(noise, probs)
    monkeypatch.setenv("ARDISTILL_CACHE", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("CC", "/nonexistent/cc")
    native.reset()
    try:
        assert not native.available() and "no C compiler" in native.why_not(
            FlowMap(C, use_native=False).CaugT)
        fm = FlowMap(C)
        assert fm.packed is None and torch.equal(fm(noise, probs), plain)
        with pytest.raises(ValueError, match="no C compiler"):
            FlowMap(C, use_native=True)
        monkeypatch.setenv("CC", "false")  # a compiler that fails
        native.reset()
        assert not native.available() and "failed" in native._state["why"]
        monkeypatch.delenv("CC")
        monkeypatch.setenv("ARDISTILL_NATIVE", "0")
        native.reset()
        assert not native.available() and FlowMap(C).packed is None
    finally:
        native.reset()
    # float64 compute or a codebook size that is not a multiple of 8: PyTorch path
    assert FlowMap(C, FlowSolverConfig(dtype=torch.float64)).packed is None
    assert FlowMap(C[:-1]).packed is None


def test_threads_sharing_a_map_get_their_own_workspace(kernel):
    """The kernel runs without the GIL (ctypes releases it): two threads solving different
    problems with one FlowMap at the same time get the tokens they get one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    problems = [make_flow_problem(SMALL_LLAMAGEN, 120, std, seed=s)
                for s, std in ((5, 1.0), (6, 4.5))]
    C = problems[0][2]
    fm = FlowMap(C, use_native=True)
    alone = [fm(n, p) for n, p, _ in problems]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            got = list(pool.map(lambda q: fm(q[0], q[1]), [(n, p) for n, p, _ in problems]))
            assert all(torch.equal(a, b) for a, b in zip(got, alone))
