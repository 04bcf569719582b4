"""Fast CPU inference for the VQ decoders (LlamaGen's `VQModel`, VAR's `VQVAE`).

The decoders are stacks of 3x3 convolutions (97% of their multiply-adds), GroupNorm + SiLU,
nearest 2x upsampling and a few attention blocks at the lowest resolution. On a CPU their time
is the convolutions' (oneDNN runs them near the fp32 peak), so a faster decoder needs fewer
multiplications. Here, for float32 tensors on the CPU without gradients:

- every 3x3 convolution is a Winograd convolution on channels-last tensors, F(6x6, 3x3) from
  64 x 64 pixels up and F(4x4, 3x3) below (`tile_for`): the tile transforms in C
  (`decoder_kernel.c`, built on first use like the flow kernel, `ardistill.utils.native`), the
  (m + 2)^2 GEMMs per block of tiles in one `torch.bmm` (5.06x / 4x fewer multiplications);
- a GroupNorm's statistics take one pass (float64 sums), its scale and shift with the SiLU a
  second; the nearest upsampling is read by the next convolution's input transform, the
  residual is added in the output transform (in place): no normalised, upsampled or summed
  copy of a feature map is written besides the activated one;
- the transforms run on torch's own OpenMP threads (`utils.native.openmp_team`), else on
  Python threads;
- the transformed weights are computed once per weight (in float64) and kept on the module.

The output equals the plain decoder's up to float32 rounding (Winograd's is a little larger
than a direct convolution's; docs/teachers.md, "Fast VQ decoding", has the measured
deviations, and the oracle tests run through this path). `decode` returns None where the path
does not apply (gradients needed, not float32 on the CPU, channels not a multiple of 8, no
compiler, too little work, `ARDISTILL_NATIVE=0` or `ARDISTILL_FAST_DECODER=0`, inside
`disabled()`); the caller then runs the plain modules.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.teachers.fast_linear import weight_key
from ardistill.utils.native import NativeLibrary, set_openmp_team

SOURCE = Path(__file__).with_name("decoder_kernel.c")
# Tiles per block: the block's transformed input and GEMM output up to 128 MB each. Fewer, larger
# GEMMs run faster than blocks that stay in the L3 cache (bench on the EPYC, 2 threads: VAR
# 1.20 / 1.11 / 1.09 s per image at 8 / 64 / 128 MB, LlamaGen 0.79 / 0.74 / 0.70 s); a
# 256-px image at batch 1 is then one block per convolution.
BLOCK_BYTES = 128 << 20
# G of F(m x m, 3 x 3) per tile size m (B^T and A^T are in decoder_kernel.c)
_G = {4: ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
          (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
      6: ((1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9),
          (1 / 90, 1 / 45, 2 / 45), (1 / 90, -1 / 45, 2 / 45),
          (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1))}
TILE: int | None = None  # None: per resolution (`tile_for`)
# Below this much work (output pixels x last level's channels^2) the plain modules are as fast
# (bench vq, EPYC, 2 threads: the 32-px MNIST decoders, 1M, 6 ms fast vs 5 ms plain; VQ-16 at
# 32 px, 17M, 48 vs 55 ms; at 256 px 0.8 vs 2.5 s).
MIN_WORK = 1 << 22


def tile_for(H: int, W: int) -> int:
    """The Winograd tile with the fewer GEMM rows x transform points at this resolution (4 on a
    tie: its rounding error is about half F(6x6)'s): 4 up to 32 x 32, 6 from 64 x 64."""
    cost = {m: -(-H // m) * -(-W // m) * (m + 2) ** 2 for m in (4, 6)}
    return 6 if cost[6] < cost[4] else 4


def _declare(lib: ctypes.CDLL) -> None:
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    sigs = {"ard_wino_in": [i32, i32, i32, i32, i32, i32, p, i32, i32, i64, i64, i64, i64, p],
            "ard_wino_out": [i32, i32, i32, i32, i32, p, i64, p, p, p, i32, i32, i64, i64, i64],
            "ard_channel_sums": [i32, i64, i32, p, p],
            "ard_norm_silu": [i32, i64, i32, p, p, p, p]}
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = None, args
    lib.ardistill_team = set_openmp_team(lib)


_LIB = NativeLibrary(SOURCE, "decoder", _declare, "VQ decoder")
_pool: dict = {}
_local = threading.local()
_free: list[dict] = []  # buffer sets of finished decodes (`_scratch`)
_free_lock = threading.Lock()
_off = threading.local()


def available() -> bool:
    """Whether the fast path can run here (its kernel built or loaded; False with
    `ARDISTILL_NATIVE=0` or `ARDISTILL_FAST_DECODER=0`, and inside `disabled()`)."""
    if getattr(_off, "depth", 0) or os.environ.get("ARDISTILL_FAST_DECODER", "1") == "0":
        return False
    return _LIB.available()


def why_not() -> str:
    """Why `available()` is False ("" when it is True)."""
    if getattr(_off, "depth", 0):
        return "disabled by fast_decoder.disabled()"
    if os.environ.get("ARDISTILL_FAST_DECODER", "1") == "0":
        return "disabled by ARDISTILL_FAST_DECODER=0"
    return _LIB.why


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Decode through the plain modules in this block (this thread): the reference path, as
    the official code computes it."""
    _off.depth = getattr(_off, "depth", 0) + 1
    try:
        yield
    finally:
        _off.depth -= 1


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _run(fn, start: int, stop: int) -> None:
    """fn(nthreads, a, b, part) over [start, stop) on torch.get_num_threads() threads: one call
    with all of them where the kernel runs on torch's OpenMP team, else one call per part
    [a, b) on Python threads (the kernels run without the GIL), part = 0, 1, ..."""
    n = torch.get_num_threads()
    if n == 1 or _LIB.lib.ardistill_team:
        fn(n, start, stop, 0)
        return
    k = max(1, min(n, (stop - start) // 4))
    if k == 1:
        fn(1, start, stop, 0)
        return
    pool = _pool.get("pool")
    if pool is None or pool._max_workers < k - 1:  # noqa: SLF001
        pool = _pool["pool"] = ThreadPoolExecutor(k - 1, thread_name_prefix="ardistill-vq")
    cuts = [start + (stop - start) * i // k for i in range(k + 1)]
    futs = [pool.submit(fn, 1, cuts[i], cuts[i + 1], i) for i in range(1, k)]
    fn(1, cuts[0], cuts[1], 0)
    for f in futs:
        f.result()


@contextlib.contextmanager
def _scratch() -> Iterator[None]:
    """Reuse `_workspace` buffers by name within the block (one decode, this thread). The sets
    of buffers are pooled between decodes (one set per decode running at the same time, not
    per thread): fresh pages for every convolution cost as much as its transforms, and even
    once per decode 2-5% of it."""
    with _free_lock:
        _local.bufs = _free.pop() if _free else {}
    try:
        yield
    finally:
        with _free_lock:
            _free.append(_local.bufs)
        _local.bufs = None


def _workspace(name: str, numel: int) -> Tensor:
    """A float32 buffer of `numel` entries: the same memory for the same name inside a
    `_scratch()` block, else a new one."""
    bufs = getattr(_local, "bufs", None)
    buf = None if bufs is None else bufs.get(name)
    if buf is None or buf.numel() < numel:
        with torch.inference_mode(False):  # a normal tensor: writable in and out of the mode
            buf = torch.empty(numel, dtype=torch.float32)
        if bufs is not None:
            bufs[name] = buf
    return buf[:numel]


def _winograd_weight(conv: nn.Conv2d, m: int) -> tuple[Tensor, Tensor]:
    """(U ((m + 2)^2, Cin, Cs) = G g G^T per output channel, bias (Cs,)), Cs = Cout rounded up
    to 8 (zero columns), computed in float64 once per weight and tile size and kept on the
    module."""
    key = (m, weight_key(conv.weight), None if conv.bias is None else weight_key(conv.bias))
    cached = conv.__dict__.get("_ardistill_winograd")
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    w = conv.weight.detach().double()
    co, ci = w.shape[:2]
    cs = -(-co // 8) * 8
    G = torch.tensor(_G[m], dtype=torch.float64)
    U = torch.einsum("ik,ockl,jl->ijco", G, w, G).reshape((m + 2) ** 2, ci, co)
    U = F.pad(U, (0, cs - co)).float().contiguous()
    b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(co)
    b = F.pad(b, (0, cs - co)).contiguous()
    conv.__dict__["_ardistill_winograd"] = (key, U, b)
    return U, b


def conv3x3(x: Tensor, conv: nn.Conv2d, norm: tuple[Tensor, Tensor] | None = None,
            residual: Tensor | None = None, up: bool = False, out: Tensor | None = None,
            tile: int | None = None) -> Tensor:
    """conv(silu(x * scale + shift)) (norm = (scale, shift), (N, C)), or conv(x), on x (N, H, W,
    C) channels-last float32; `up`: on the nearest 2x upsampling of x; plus `residual` (N, H',
    W', Cout). Returns (N, H', W', Cs), Cs = Cout rounded up to 8 (extra channels zero), in
    `out` when given (a contiguous buffer of that size; it may be `residual` itself: each output
    pixel's residual is read just before the pixel is written). tile: the output tile m of
    F(m x m, 3 x 3), 4 or 6 (default: `TILE`, else `tile_for`)."""
    lib = _LIB.lib
    N, Hs, Ws, C = x.shape
    H, W = (2 * Hs, 2 * Ws) if up else (Hs, Ws)
    m = tile or TILE or tile_for(H, W)
    if m not in _G:
        raise ValueError(f"Winograd tile must be 4 or 6, got {m}")
    a2 = (m + 2) ** 2
    U, bias = _winograd_weight(conv, m)
    cs = U.shape[2]
    th, tw = -(-H // m), -(-W // m)
    T = N * th * tw
    y = torch.empty(N, H, W, cs, dtype=torch.float32) if out is None else out
    if y.shape != (N, H, W, cs) or not y.is_contiguous() or y.dtype != torch.float32:
        raise ValueError(f"out must be a contiguous float32 ({N}, {H}, {W}, {cs}) tensor")
    x = x.contiguous() if norm is None else _norm_silu(x, *norm)
    res = None if residual is None else residual.contiguous()
    tb = max(8, min(T, BLOCK_BYTES // (a2 * 4 * max(C, cs))))
    V, M = _workspace("V", a2 * tb * C), _workspace("M", a2 * tb * cs)
    for t0 in range(0, T, tb):
        n = min(tb, T - t0)
        Vb, Mb = V[: a2 * n * C].view(a2, n, C), M[: a2 * n * cs].view(a2, n, cs)
        _run(lambda k, a, b, _, t0=t0, n=n, Vb=Vb: lib.ard_wino_in(
            k, m, H, W, C, int(up), x.data_ptr(), th, tw, t0, a, b, n, Vb.data_ptr()),
            t0, t0 + n)
        if cs <= 16:  # a few output channels (conv_out): MKL is 1.6-1.9x faster this way round
            Mb.copy_(torch.bmm(U.transpose(1, 2), Vb.transpose(1, 2)).transpose(1, 2))
        else:
            torch.bmm(Vb, U, out=Mb)
        _run(lambda k, a, b, _, t0=t0, n=n, Mb=Mb: lib.ard_wino_out(
            k, m, H, W, cs, Mb.data_ptr(), n, bias.data_ptr(), _ptr(res), y.data_ptr(), th, tw,
            t0, a, b), t0, t0 + n)
    return y


def _norm_silu(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """silu(x * scale + shift) into a workspace (read by the next transform)."""
    N, H, W, C = x.shape
    npix = H * W
    x, scale, shift = x.contiguous(), scale.contiguous(), shift.contiguous()
    out = _workspace("act", x.numel()).view(N, H, W, C)
    lib = _LIB.lib
    for i in range(N):
        xi, oi = x[i].view(npix, C), out[i].view(npix, C)
        _run(lambda k, a, b, _, xi=xi, oi=oi, i=i: lib.ard_norm_silu(
            k, b - a, C, xi[a:].data_ptr(), scale[i].data_ptr(), shift[i].data_ptr(),
            oi[a:].data_ptr()), 0, npix)
    return out


def group_norm_affine(x: Tensor, norm: nn.GroupNorm) -> tuple[Tensor, Tensor]:
    """The GroupNorm of x (N, H, W, C) channels-last as y = x * scale + shift: (scale, shift)
    (N, C) float32, statistics in float64."""
    N, H, W, C = x.shape
    npix = H * W
    x = x.contiguous()
    parts = torch.zeros(N, torch.get_num_threads(), 2, C, dtype=torch.float64)
    lib = _LIB.lib
    for i in range(N):
        xi = x[i].view(npix, C)
        _run(lambda k, a, b, part, xi=xi, i=i: lib.ard_channel_sums(
            k, b - a, C, xi[a:].data_ptr(), parts[i, part].data_ptr()), 0, npix)
    s = parts.sum(1).view(N, 2, norm.num_groups, C // norm.num_groups).sum(-1)
    count = npix * (C // norm.num_groups)
    mean = s[:, 0] / count
    var = (s[:, 1] / count - mean * mean).clamp_min(0.0)
    rstd = torch.rsqrt(var + norm.eps)  # (N, G)
    gamma = norm.weight.detach().double().view(1, norm.num_groups, -1)
    beta = norm.bias.detach().double().view(1, C)
    scale = (rstd[:, :, None] * gamma).reshape(N, C)
    shift = beta - (mean[:, :, None] * rstd[:, :, None] * gamma).reshape(N, C)
    return scale.float().contiguous(), shift.float().contiguous()


def _linear(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A 1x1 convolution on channels-last x (N, H, W, Cin)."""
    w = conv.weight.detach()
    return F.linear(x, w.view(w.shape[0], w.shape[1]), conv.bias)


def _res_block(x: Tensor, blk: nn.Module) -> Tensor:
    """x (a feature map of this decode, overwritten with the block's output when the widths
    match: fresh pages cost as much as a transform)."""
    N, H, W, _ = x.shape
    co = blk.conv1.out_channels
    h = conv3x3(x, blk.conv1, norm=group_norm_affine(x, blk.norm1),
                out=_workspace("h", N * H * W * co).view(N, H, W, co))
    short = getattr(blk, "nin_shortcut", None)
    skip = _linear(x, short) if isinstance(short, nn.Conv2d) else x
    return conv3x3(h, blk.conv2, norm=group_norm_affine(h, blk.norm2), residual=skip, out=skip)


def _attn_block(x: Tensor, blk: nn.Module) -> Tensor:
    """Single-head self-attention over the H*W positions: LlamaGen's separate q/k/v 1x1 convs
    or VAR's fused qkv."""
    N, H, W, C = x.shape
    scale, shift = group_norm_affine(x, blk.norm)
    h = x.reshape(N, H * W, C) * scale[:, None, :] + shift[:, None, :]
    if hasattr(blk, "qkv"):
        q, k, v = _linear(h, blk.qkv).chunk(3, dim=-1)
    else:
        q, k, v = (_linear(h, getattr(blk, n)) for n in ("q", "k", "v"))
    o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=C ** -0.5)
    return x + _linear(o[:, 0], blk.proj_out).view(N, H, W, C)


def _head(h: Tensor, norm: nn.GroupNorm, conv: nn.Conv2d) -> Tensor:
    """norm_out + SiLU + conv_out -> (N, Cout, H, W) contiguous."""
    y = conv3x3(h, conv, norm=group_norm_affine(h, norm))
    return y[..., : conv.out_channels].permute(0, 3, 1, 2).contiguous()


def _is_conv3(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1)
            and m.padding == (1, 1) and m.dilation == (1, 1) and m.groups == 1)


def _levels(decoder: nn.Module) -> list[nn.Module]:
    """The decoder's resolution levels from the lowest up (LlamaGen stores them in that order
    as `conv_blocks`, VAR in reverse as `up`)."""
    if hasattr(decoder, "conv_blocks"):
        return list(decoder.conv_blocks)
    return list(reversed(decoder.up))


def _blocks(level: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    res = list(level.res if hasattr(level, "res") else level.block)
    return res, list(level.attn)


def _mid(decoder: nn.Module) -> list[nn.Module]:
    mid = decoder.mid
    return list(mid) if isinstance(mid, nn.ModuleList) else [mid.block_1, mid.attn_1, mid.block_2]


def applies(decoder: nn.Module, post_quant_conv: nn.Conv2d, z: Tensor,
            min_work: int | None = None) -> bool:
    """Whether `decode` runs the fast path for this decoder and input: inference (no gradient
    needed, eval mode) in float32 on the CPU, channels a multiple of 8, the kernel available,
    and enough work: output pixels x (last level's channels)^2 >= min_work (default
    `MIN_WORK`)."""
    params = list(decoder.parameters()) + list(post_quant_conv.parameters())
    if decoder.training or z.device.type != "cpu" or z.dtype != torch.float32 or z.dim() != 4:
        return False
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in params):
        return False
    if torch.is_grad_enabled() and (z.requires_grad or any(p.requires_grad for p in params)):
        return False
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)] + [post_quant_conv]
    if any(m.in_channels % 8 for m in convs) or z.shape[1] % 8:
        return False
    if any(not _is_conv3(m) and m.kernel_size != (1, 1) for m in convs):
        return False
    ups = sum(hasattr(level, "upsample") for level in _levels(decoder))
    work = z.shape[2] * z.shape[3] * 4 ** ups * decoder.conv_out.in_channels ** 2
    if work < (MIN_WORK if min_work is None else min_work):
        return False
    return available()


def decode(decoder: nn.Module, post_quant_conv: nn.Conv2d, z: Tensor,
           min_work: int | None = None) -> Tensor | None:
    """decoder(post_quant_conv(z)) for z (N, C, h, w) through the fast path, or None where it
    does not apply (`applies`)."""
    if not applies(decoder, post_quant_conv, z, min_work):
        return None
    with torch.no_grad(), _scratch():
        x = z.permute(0, 2, 3, 1).contiguous()
        x = conv3x3(x, post_quant_conv) if _is_conv3(post_quant_conv) else _linear(
            x, post_quant_conv)
        h = conv3x3(x, decoder.conv_in)
        for m in _mid(decoder):
            if isinstance(m, nn.Identity):
                continue
            h = _attn_block(h, m) if hasattr(m, "proj_out") else _res_block(h, m)
        for level in _levels(decoder):
            res, attn = _blocks(level)
            for j, blk in enumerate(res):
                h = _res_block(h, blk)
                if attn and not isinstance(attn[j], nn.Identity):
                    h = _attn_block(h, attn[j])
            if hasattr(level, "upsample"):
                h = conv3x3(h, level.upsample.conv, up=True)
        return _head(h, decoder.norm_out, decoder.conv_out)
