"""`teachers.fast_decoder`: Winograd convolutions against direct ones, whole decoders against
the plain modules and the oracle pack, the cases that keep the plain path, and the threads."""

from __future__ import annotations

import copy
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ardistill.bench import vq as bench_vq
from ardistill.errors import UserError
from ardistill.teachers import fast_decoder as fd
from ardistill.teachers.llamagen.config import VQConfig
from ardistill.teachers.llamagen.loading import load_vq
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.teachers.var.config import VQVAEConfig, from_official_build_args
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.teachers.var.weights import load_vqvae
from ardistill.utils.checkpoint import read_state_dict
from oracle_checks import assert_close


@pytest.fixture(autouse=True)
def kernel():
    """The kernel must build wherever a C compiler is on PATH (CI's machines have one)."""
    if shutil.which("cc") is None:
        pytest.fail("no C compiler here: the fast decoder's tests need one")
    assert fd.available(), fd.why_not()


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _randomize(m: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights, the norms' affine parameters and the biases included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.GroupNorm):
                mod.weight.copy_(1 + 0.3 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.3 * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / fan_in ** 0.5)
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
    return m.eval()


def _llamagen_vq(seed: int = 0) -> VQModel:
    cfg = VQConfig(codebook_size=64, codebook_embed_dim=8, encoder_ch_mult=(1, 2, 2),
                   decoder_ch_mult=(1, 2, 2), z_channels=16, ch=32, num_res_blocks=1)
    torch.manual_seed(seed)
    return VQModel(cfg).eval()


def _var_vae(seed: int = 0) -> VQVAE:
    cfg = VQVAEConfig(vocab_size=64, z_channels=16, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                      patch_nums=(1, 2, 3))
    torch.manual_seed(seed)
    return VQVAE(cfg).eval()


def _plain(fn, *args):
    with fd.disabled():
        return fn(*args)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("tile", [4, 6])
@pytest.mark.parametrize("shape", [(2, 16, 13, 9, 8), (1, 8, 4, 4, 24), (1, 24, 7, 12, 16)])
@pytest.mark.parametrize("blocks", ["one", "many"])
def test_conv3x3_matches_a_direct_convolution(threads, tile, shape, blocks, monkeypatch):
    if blocks == "many":  # blocks of 8 tiles: the tile ranges start inside the map
        monkeypatch.setattr(fd, "BLOCK_BYTES", 1)
    N, C, H, W, Co = shape
    g = torch.Generator().manual_seed(sum(shape) + tile)
    conv = torch.nn.Conv2d(C, Co, 3, 1, 1)
    norm = torch.nn.GroupNorm(4, C, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(C, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(C, generator=g))
    x = torch.randn(N, C, H, W, generator=g)
    res = torch.randn(N, Co, H, W, generator=g)
    xl = x.permute(0, 2, 3, 1).contiguous()
    rl = res.permute(0, 2, 3, 1).contiguous()

    def ref(inp):  # float64 direct convolution
        return F.conv2d(inp.double(), conv.weight.double(), conv.bias.double(), padding=1)

    with torch.no_grad():
        cases = {
            "plain": (fd.conv3x3(xl, conv, tile=tile), ref(x)),
            "norm+silu": (fd.conv3x3(xl, conv, norm=fd.group_norm_affine(xl, norm), tile=tile),
                          ref(F.silu(F.group_norm(x.double(), 4, norm.weight.double(),
                                                  norm.bias.double(), 1e-6)))),
            "upsample": (fd.conv3x3(xl, conv, up=True, tile=tile),
                         ref(F.interpolate(x, scale_factor=2.0, mode="nearest"))),
            "residual in place": (fd.conv3x3(xl, conv, residual=rl, out=rl, tile=tile),
                                  ref(x) + res.double()),
        }
    for what, (got, want) in cases.items():
        assert got.shape == (*want.shape[:1], *want.shape[2:], -(-Co // 8) * 8), what
        err = (got[..., :Co].permute(0, 3, 1, 2).double() - want).abs().max().item()
        assert err < 3e-5, f"{what}: max abs error {err:.2e}"
        assert not got[..., Co:].any(), f"{what}: padding channels not zero"


def test_tile_choice_and_bad_tile():
    assert [fd.tile_for(s, s) for s in (4, 16, 32, 64, 128, 256)] == [4, 4, 4, 6, 6, 6]
    conv = torch.nn.Conv2d(8, 8, 3, 1, 1)
    with pytest.raises(ValueError, match="tile must be 4 or 6"):
        fd.conv3x3(torch.zeros(1, 4, 4, 8), conv, tile=5)
    with pytest.raises(ValueError, match="out must be"):
        fd.conv3x3(torch.zeros(1, 4, 4, 8), conv, out=torch.zeros(1, 4, 4, 16))


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("family", ["llamagen", "var"])
def test_decoders_match_the_plain_modules(threads, family, monkeypatch):
    monkeypatch.setattr(fd, "MIN_WORK", 0)
    if family == "llamagen":
        tok = _randomize(_llamagen_vq(1), 1)
        z = torch.randn(2, 8, 5, 6)
        run = tok.decode
    else:
        tok = _randomize(_var_vae(2), 2)
        z = torch.randn(2, 16, 3, 3)
        run = tok.fhat_to_img
    with torch.inference_mode():
        assert fd.applies(tok.decoder, tok.post_quant_conv, z)
        got, plain = run(z), _plain(run, z)
        ref = _plain(getattr(copy.deepcopy(tok).double(), run.__name__), z.double())
    assert got.shape == plain.shape and got.dtype == torch.float32
    plain_err = (plain.double() - ref).abs().max().item()
    fast_err = (got.double() - ref).abs().max().item()
    assert fast_err < 1e-4 and fast_err < 5 * plain_err + 1e-5, (fast_err, plain_err)
    assert (got - plain).abs().max().item() < 1e-4


def test_the_oracle_decoders_through_the_fast_path(oracle: Path, monkeypatch):
    """The oracle pack's tiny VQ and VQVAE (official outputs) at the oracle's image tolerance."""
    monkeypatch.setattr(fd, "MIN_WORK", 0)
    d = oracle / "llamagen"
    cfg = json.loads((d / "config.json").read_text())["vq"]
    vq = load_vq(VQConfig.from_official(cfg["model_args"], cfg["encoder_decoder_override"]),
                 read_state_dict(d / "vq_state_dict.pt"), what="oracle VQ")
    io = torch.load(d / "vq_io.pt", weights_only=True)
    h, w = cfg["latent_grid"]
    with torch.no_grad():
        assert fd.applies(vq.decoder, vq.post_quant_conv, io["latent"])
        assert_close(vq.decode_code(io["codes"], (h, w)), io["dec_codes"], 1e-4, "dec_codes")
        assert_close(vq.decode(io["latent"]), io["dec_latent"], 1e-4, "dec_latent")
    d = oracle / "var"
    cfg = json.loads((d / "config.json").read_text())
    _, vae_cfg = from_official_build_args(cfg["build_vae_var_args"],
                                          cfg["vae_encoder_decoder_override"])
    vae = load_vqvae(vae_cfg, d / "vqvae_state_dict.pt", what="oracle VQVAE")
    io = torch.load(d / "var_teacher_io.pt", weights_only=True)
    with torch.no_grad():
        fhat = vae.indices_to_fhat(io["enc_idx"])
        assert fd.applies(vae.decoder, vae.post_quant_conv, fhat)
        assert_close(vae.fhat_to_img(fhat), io["enc_rec"], 1e-4, "enc_rec")


def test_the_plain_path_where_the_fast_one_does_not_apply(monkeypatch, tmp_path):
    tok = _llamagen_vq(3)
    z = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        assert not fd.applies(tok.decoder, tok.post_quant_conv, z)  # below MIN_WORK
        assert fd.decode(tok.decoder, tok.post_quant_conv, z, min_work=0) is not None
        assert not fd.applies(tok.decoder, tok.post_quant_conv, z.double(), 0)
        assert not fd.applies(tok.decoder, tok.post_quant_conv, torch.randn(1, 8, 4), 0)
        with fd.disabled():
            assert not fd.applies(tok.decoder, tok.post_quant_conv, z, 0)
            assert "disabled" in fd.why_not()
        assert fd.applies(tok.decoder, tok.post_quant_conv, z, 0)  # restored after the block
        tok.train()
        assert not fd.applies(tok.decoder, tok.post_quant_conv, z, 0)
        tok.eval()
    # gradients needed: the plain modules (autograd through them)
    assert not fd.applies(tok.decoder, tok.post_quant_conv, z, 0)
    out = tok.decode(z)
    assert out.requires_grad
    monkeypatch.setenv("ARDISTILL_FAST_DECODER", "0")
    assert not fd.available() and "ARDISTILL_FAST_DECODER=0" in fd.why_not()
    monkeypatch.delenv("ARDISTILL_FAST_DECODER")
    # channels that are not a multiple of 8
    odd = VQModel(VQConfig(codebook_size=64, codebook_embed_dim=6, encoder_ch_mult=(1, 2),
                           decoder_ch_mult=(1, 2), z_channels=16, ch=32,
                           num_res_blocks=1)).eval()
    with torch.no_grad():
        assert not fd.applies(odd.decoder, odd.post_quant_conv, torch.randn(1, 6, 4, 4), 0)
    # no compiler: unavailable, and decoding still works through the plain modules
    monkeypatch.setenv("ARDISTILL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    fd._LIB.reset()
    try:
        assert not fd.available() and "no C compiler" in fd.why_not()
        with torch.no_grad():
            assert fd.decode(tok.decoder, tok.post_quant_conv, z, min_work=0) is None
            assert torch.equal(tok.decode(z), _plain(tok.decode, z))
    finally:
        fd._LIB.reset()


def test_openmp_team_and_python_threads_agree(monkeypatch):
    """On torch's OpenMP team (found here: Linux, torch's OpenMP backend) and on Python threads
    the tiles get the same arithmetic; only the norms' partial sums are split differently."""
    assert fd._LIB.lib.ardistill_team, "torch's OpenMP runtime was not found"
    monkeypatch.setattr(fd, "MIN_WORK", 0)
    tok = _randomize(_llamagen_vq(4), 4)
    z = torch.randn(1, 8, 6, 6)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            team = tok.decode(z)
            monkeypatch.setattr(fd._LIB.lib, "ardistill_team", False)
            py = tok.decode(z)
    finally:
        torch.set_num_threads(before)
    assert (team - py).abs().max().item() < 1e-5


def test_changed_weights_are_transformed_again(monkeypatch):
    monkeypatch.setattr(fd, "MIN_WORK", 0)
    tok = _randomize(_llamagen_vq(5), 5)
    z = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        first = tok.decode(z)
        tok.decoder.conv_out.weight.mul_(2.0)
        second, plain = tok.decode(z), _plain(tok.decode, z)
    assert (second - plain).abs().max().item() < 1e-4
    assert (second - first).abs().max().item() > 1e-2


def test_concurrent_decodes_keep_their_own_workspaces(monkeypatch):
    monkeypatch.setattr(fd, "MIN_WORK", 0)
    tok = _randomize(_llamagen_vq(6), 6)
    zs = [torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    with torch.no_grad():
        alone = [tok.decode(z) for z in zs]
    got: list = [None, None]

    def work(i: int) -> None:
        with torch.no_grad():
            for _ in range(3):
                got[i] = tok.decode(zs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(torch.equal(a, b) for a, b in zip(got, alone))


def test_bench_vq_prints_and_records(tmp_path, capsys):
    out = tmp_path / "vq.json"
    opts = bench_vq.Options(presets="mnist-llamagen,mnist-var", repeats=1, threads=1, json=out)
    assert bench_vq.run(opts) == 0
    text = capsys.readouterr().out
    assert "mnist-llamagen: VQ decode, batch 1, image [3, 32, 32]" in text
    res = json.loads(out.read_text())
    assert [r["preset"] for r in res] == ["mnist-llamagen", "mnist-var"]
    for r in res:
        rows = {row["decoder"]: row for row in r["rows"]}
        assert set(rows) == {"ardistill", "plain"} and r["baseline"] == "plain"
        assert rows["plain"]["max_abs_diff_vs_plain"] == 0.0
        assert rows["ardistill"]["max_abs_err_vs_float64"] < 1e-4
        assert rows["plain"]["speedup"] == 1.0 and rows["ardistill"]["s_per_image"] > 0
    with pytest.raises(UserError, match="vq_model.py: not found"):
        bench_vq.run(bench_vq.Options(presets="mnist-llamagen", repeats=1,
                                      official_llamagen=tmp_path))


def test_weights_made_in_inference_mode(monkeypatch):
    """Inference tensors have no version counter: their transformed weights are keyed by their
    memory, and the output still matches the plain modules, twice."""
    monkeypatch.setattr(fd, "MIN_WORK", 0)
    with torch.inference_mode():
        tok = _randomize(_llamagen_vq(7), 7)
        assert tok.decoder.conv_in.weight.is_inference()
        z = torch.randn(1, 8, 4, 4)
        first, second, plain = tok.decode(z), tok.decode(z), _plain(tok.decode, z)
    assert torch.equal(first, second) and (first - plain).abs().max().item() < 1e-4
