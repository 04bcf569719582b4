"""Every teacher and tokenizer of the oracle pack against our implementations.

LlamaGen (oracle README §4.1-4.3): the class- and text-conditional GPTs and the VQ tokenizer.
VAR (§5.1): the VAR transformer and the multi-scale VQVAE. Both: full-size presets have exactly
the official keys, shapes, dtypes and parameter counts (§6); tolerances from §8.

Everything about the tiny models (configs, sampling parameters, grids, scales) is read from the
pack's `config.json` files, so the same file passes on any pack of this format. Every IO file is
checked for coverage: declared inputs + compared outputs == every key it holds, so a missing or
an extra entry fails. The pack directory is `$ARDISTILL_ORACLE_DIR` (default ../shared/oracle).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ardistill.teachers.base import Condition, SamplingConfig, decode, greedy_chooser
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.llamagen.loading import load_gpt, load_vq
from ardistill.teachers.llamagen.presets import PRESETS
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher, caption_attention_mask
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.teachers.var.config import from_official_build_args
from ardistill.teachers.var.model import VAR
from ardistill.teachers.var.presets import PRESETS as VAR_PRESETS
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.teachers.var.weights import load_var, load_vqvae
from ardistill.utils.checkpoint import read_state_dict
from oracle_checks import assert_close, assert_exact, assert_key_listing

ATOL_LOGITS = 2e-4
ATOL_PROBS = 1e-4
ATOL_IMAGE = 1e-4


@pytest.fixture(scope="module")
def pack(oracle: Path) -> dict:
    d = oracle / "llamagen"
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        pytest.fail(f"oracle llamagen/config.json unreadable: {e}")
    return {"dir": d, "cfg": cfg}


def _io(pack: dict, name: str) -> dict:
    path = pack["dir"] / name
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # a missing or unreadable entry fails, never skips
        pytest.fail(f"oracle {path} unreadable: {e}")


@pytest.fixture(scope="module")
def vq(pack) -> VQModel:
    c = pack["cfg"]["vq"]
    cfg = VQConfig.from_official(c["model_args"], c["encoder_decoder_override"])
    return load_vq(cfg, read_state_dict(pack["dir"] / "vq_state_dict.pt"), what="oracle VQ")


def _teacher(pack, vq, kind: str) -> LlamaGenTeacher:
    cfg = GPTConfig.from_official(pack["cfg"][f"{kind}_teacher"]["model_args_resolved"])
    sd = read_state_dict(pack["dir"] / f"{kind}_teacher_state_dict.pt")
    gpt = load_gpt(cfg, sd, what=f"oracle {kind} GPT")
    return LlamaGenTeacher(f"oracle-{kind}", gpt, vq, SamplingConfig())


@pytest.fixture(scope="module")
def c2i(pack, vq) -> LlamaGenTeacher:
    return _teacher(pack, vq, "c2i")


@pytest.fixture(scope="module")
def t2i(pack, vq) -> LlamaGenTeacher:
    return _teacher(pack, vq, "t2i")


_close, _exact = assert_close, assert_exact


def _coverage(io: dict, checked: set[str], inputs: set[str]) -> None:
    """Every entry of the IO file is a declared input or a compared output, and vice versa."""
    diff = set(io) ^ (checked | inputs)
    assert not diff, f"entries unchecked (extra in the pack) or missing from it: {sorted(diff)}"


def _check_probs(got: torch.Tensor, ref: torch.Tensor, tie_safe: torch.Tensor, what: str):
    """atol 1e-4 on tie-safe rows; elsewhere supports may differ only at the boundary and
    the renormalised probabilities on the common support must agree."""
    assert got.shape == ref.shape, what
    _close(got[tie_safe], ref[tie_safe], ATOL_PROBS, f"{what} (tie-safe rows)")
    g, r = got[~tie_safe], ref[~tie_safe]
    for i in range(g.shape[0]):
        sg, sr = g[i] > 0, r[i] > 0
        assert (sg ^ sr).sum() <= 2, f"{what}: supports differ beyond the boundary"
        common = sg & sr
        _close(g[i][common] / g[i][common].sum(), r[i][common] / r[i][common].sum(),
               ATOL_PROBS, f"{what} (common support of a boundary row)")


def test_c2i_teacher_reproduces_every_output(pack, c2i):
    io = _io(pack, "c2i_teacher_io.pt")
    s = pack["cfg"]["c2i_teacher"]["sampling"]
    inputs = {"labels", "tokens", "intermediate_prefix"}
    checked: set[str] = set()
    cond, tokens = Condition(labels=io["labels"]), io["tokens"]

    cond_l, null_l = c2i.forward_logits_pair(tokens, cond)
    _close(cond_l, io["logits_cond"], ATOL_LOGITS, "logits_cond")
    _close(null_l, io["logits_null"], ATOL_LOGITS, "logits_null")
    _close(c2i.forward_logits(tokens, cond), io["logits_cond"], ATOL_LOGITS, "forward_logits")
    guided = c2i.guided_logits(tokens, cond, SamplingConfig(cfg_scale=s["cfg_scale"]))
    _close(guided, io["logits_cfg"], ATOL_LOGITS * max(1.0, s["cfg_scale"]), "logits_cfg")
    checked |= {"logits_cond", "logits_null", "logits_cfg"}

    for name, p in s["probs"].items():
        sc = SamplingConfig(cfg_scale=s["cfg_scale"], **p)
        got = c2i.guided_probs(tokens, cond, sc)
        _check_probs(got, io[f"probs_{name}"], io[f"probs_{name}_tie_safe"], f"probs_{name}")
        checked |= {f"probs_{name}", f"probs_{name}_tie_safe"}

    for name, p in s.items():
        if name.startswith("greedy"):
            key = "greedy_tokens" + name[len("greedy"):]
            _exact(decode(c2i, cond, SamplingConfig(**p), greedy_chooser), io[key], key)
            checked.add(key)

    inter, prefix = s["intermediate"], io["intermediate_prefix"]
    assert prefix.shape[1] == inter["prefix_len"]
    out = decode(c2i, cond, SamplingConfig(**s["greedy"]), greedy_chooser, prefix=prefix,
                 end_step=inter["prefix_len"] + inter["max_new_tokens"])
    _exact(out, io["intermediate_out"], "intermediate_out")
    _close(c2i.decode_tokens(io["greedy_tokens"]), io["greedy_img"], ATOL_IMAGE, "greedy_img")
    checked |= {"intermediate_out", "greedy_img"}
    _coverage(io, checked, inputs)


def test_t2i_teacher_reproduces_every_output(pack, t2i):
    io = _io(pack, "t2i_teacher_io.pt")
    s = pack["cfg"]["t2i_teacher"]["sampling"]
    inputs = {"caption", "emb_mask", "tokens"}
    cap_mask = io["emb_mask"].bool()
    cond, tokens = Condition(caption=io["caption"], caption_mask=cap_mask), io["tokens"]
    seq = io["caption"].shape[1] + tokens.shape[1] - 1
    _exact(caption_attention_mask(cap_mask, seq), io["attn_mask"], "attn_mask")
    cond_l, null_l = t2i.forward_logits_pair(tokens, cond)
    _close(cond_l, io["logits_cond"], ATOL_LOGITS, "logits_cond")
    _close(null_l, io["logits_null"], ATOL_LOGITS, "logits_null")
    cfg = s["greedy"]["cfg_scale"]
    guided = t2i.guided_logits(tokens, cond, SamplingConfig(cfg_scale=cfg))
    _close(guided, io["logits_cfg"], ATOL_LOGITS * max(1.0, cfg), "logits_cfg")
    out = decode(t2i, cond, SamplingConfig(**s["greedy"]), greedy_chooser)
    _exact(out, io["greedy_tokens"], "greedy_tokens")
    checked = {"attn_mask", "logits_cond", "logits_null", "logits_cfg", "greedy_tokens"}
    _coverage(io, checked, inputs)


def test_vq_reproduces_every_output(pack, vq, c2i):
    io = _io(pack, "vq_io.pt")
    h, w = pack["cfg"]["vq"]["latent_grid"]
    inputs = {"codes", "latent", "image"}
    _close(c2i.dd_codebook(), io["codebook_normalized"], 1e-6, "codebook_normalized")
    _close(vq.decode_code(io["codes"], (h, w)), io["dec_codes"], ATOL_IMAGE, "dec_codes")
    _close(c2i.decode_tokens(io["codes"]), io["dec_codes"], ATOL_IMAGE, "decode_tokens")
    with torch.no_grad():
        _close(vq.decode(io["latent"]), io["dec_latent"], ATOL_IMAGE, "dec_latent")
        _close(vq.encode_latents(io["image"]), io["enc_prequant"], ATOL_IMAGE, "enc_prequant")
        q = vq.encode(io["image"])
    _close(q.z_q, io["enc_quant"], ATOL_IMAGE, "enc_quant")
    _exact(q.indices.reshape(-1), io["enc_indices"], "enc_indices")
    _exact(c2i.encode_images(io["image"]).reshape(-1), io["enc_indices"], "encode_images")
    checked = {"codebook_normalized", "dec_codes", "dec_latent", "enc_prequant", "enc_quant",
               "enc_indices"}
    _coverage(io, checked, inputs)


def test_decode_latents_of_codewords_equals_decode_tokens(pack, c2i):
    io = _io(pack, "vq_io.pt")
    x = c2i.dd_codebook()[io["codes"]]
    _close(c2i.decode_latents(x), c2i.decode_tokens(io["codes"]), 1e-5, "decode_latents")


FULL_SIZE = {
    "llamagen_GPT-B_c2i": lambda: GPT(PRESETS["llamagen-b"].model_config),
    "llamagen_GPT-L_c2i": lambda: GPT(PRESETS["llamagen-l"].model_config),
    "llamagen_GPT-XL_c2i": lambda: GPT(PRESETS["llamagen-xl"].model_config),
    "llamagen_GPT-XL_t2i": lambda: GPT(PRESETS["llamagen-xl-t2i"].model_config),
    "llamagen_VQ-16": lambda: VQModel(PRESETS["llamagen-b"].tokenizer_config),
}


@pytest.mark.parametrize("model", sorted(FULL_SIZE))
def test_full_size_presets_match_official_keys(oracle, model):
    path = oracle / "keys" / f"{model}.json"
    try:
        ref = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        pytest.fail(f"{path} unreadable: {e}")
    with torch.device("meta"):
        m = FULL_SIZE[model]()
    assert_key_listing(m, ref)


def test_every_llamagen_key_listing_is_covered(oracle):
    teacher_files = {p.stem for p in (oracle / "keys").glob("llamagen_*.json")
                     if not p.stem.startswith("llamagen_DD-")}
    assert teacher_files == set(FULL_SIZE), "a LlamaGen teacher key listing is not tested"


# ----------------------------------------------------------------------
# VAR: the VAR transformer and the multi-scale VQVAE (oracle README §5.1)
# ----------------------------------------------------------------------

LOGITS_ATOL = 2e-4
PROBS_ATOL = 1e-4
FEATURE_ATOL = 1e-4

INPUTS = {"labels", "image", "tf_idx", "tf_probs_s0_tie_safe", "tf_probs_s1_tie_safe"}


@dataclass
class Ctx:
    cfg: dict
    io: dict[str, Tensor]
    teacher: VARTeacher
    memo: dict = field(default_factory=dict)

    @property
    def cond(self) -> Condition:
        return Condition(labels=self.io["labels"])

    @property
    def cfg_scale(self) -> float:
        return float(self.cfg["sampling"]["cfg"])

    def sampling(self, **kw) -> SamplingConfig:
        return SamplingConfig(cfg_scale=self.cfg_scale, **kw)


@pytest.fixture(scope="module")
def ctx(oracle: Path) -> Ctx:
    d = oracle / "var"
    cfg = json.loads((d / "config.json").read_text())
    var_cfg, vae_cfg = from_official_build_args(cfg["build_vae_var_args"],
                                                cfg["vae_encoder_decoder_override"])
    model = load_var(var_cfg, d / "var_teacher_state_dict.pt", what="oracle VAR teacher")
    vae = load_vqvae(vae_cfg, d / "vqvae_state_dict.pt", what="oracle VQVAE")
    io = torch.load(d / "var_teacher_io.pt", map_location="cpu", weights_only=True)
    return Ctx(cfg, io, VARTeacher("oracle-var", model, vae, SamplingConfig()))


def _vclose(got: Tensor, ref: Tensor, atol: float) -> None:
    assert_close(got, ref, atol, "VAR output", same_dtype=True)


def _vexact(got: Tensor, ref: Tensor) -> None:
    assert_exact(got, ref, "VAR output", same_dtype=True)


# ---- one check per stored output ----
def _enc_idx(c: Ctx) -> None:
    _vexact(c.teacher.encode_images(c.io["image"]), c.io["enc_idx"])


def _enc_rec(c: Ctx) -> None:
    _vclose(c.teacher.decode_tokens(c.io["enc_idx"]), c.io["enc_rec"], FEATURE_ATOL)


def _tf_x(c: Ctx) -> None:
    q, vae = c.teacher.vqvae.quantize, c.teacher.vqvae
    with torch.no_grad():
        x = q.indices_to_var_input(vae.split_scales(c.io["tf_idx"]))
    _vclose(x, c.io["tf_x_BLCv_wo_first_l"], FEATURE_ATOL)


def _tf_both(c: Ctx) -> Tensor:
    # cond and null as one 2B batch, conditional half first (as the pack computed them)
    lab = c.io["labels"]
    both = Condition(labels=torch.cat((lab, torch.full_like(lab, c.teacher.num_classes))))
    return c.teacher.forward_logits(c.io["tf_idx"], both)


def _tf_cond(c: Ctx) -> None:
    _vclose(_tf_both(c)[: len(c.io["labels"])], c.io["tf_logits_cond"], LOGITS_ATOL)


def _tf_null(c: Ctx) -> None:
    _vclose(_tf_both(c)[len(c.io["labels"]):], c.io["tf_logits_null"], LOGITS_ATOL)


def _tf_cfg(c: Ctx) -> None:
    got = c.teacher.guided_logits(c.io["tf_idx"], c.cond, c.sampling())
    _vclose(got, c.io["tf_logits_cfg"], LOGITS_ATOL * max(1.0, c.cfg_scale))


def _probs(name: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        p = c.cfg["sampling"]["probs"][name]
        got = c.teacher.guided_probs(c.io["tf_idx"], c.cond,
                                     c.sampling(top_k=p["top_k"], top_p=p["top_p"]))
        ref, safe = c.io[f"tf_probs_{name}"], c.io[f"tf_probs_{name}_tie_safe"]
        assert got.shape == ref.shape and safe.any()
        _vclose(got[safe], ref[safe], PROBS_ATOL)
        # rows near a cut-off: compare the distributions renormalised on the common support
        for g, r in zip(got[~safe], ref[~safe]):
            common = (g > 0) & (r > 0)
            assert common.sum() >= max(1, int(((g > 0) | (r > 0)).sum()) - 2)
            torch.testing.assert_close(g[common] / g[common].sum(), r[common] / r[common].sum(),
                                       atol=PROBS_ATOL, rtol=0)
    return check


def _fhat_per_scale(c: Ctx) -> None:
    vae = c.teacher.vqvae
    with torch.no_grad():
        got = vae.quantize.vectors_to_fhat(vae.quantize.embedding(c.io["tf_idx"]), per_scale=True)
    _vclose(got, c.io["tf_fhat_per_scale"], FEATURE_ATOL)


def _tf_img(c: Ctx) -> None:
    _vclose((c.teacher.decode_tokens(c.io["tf_idx"]) + 1) / 2, c.io["tf_img"], FEATURE_ATOL)


def _greedy_run(c: Ctx) -> tuple[Tensor, Tensor]:
    """autoregressive_infer_cfg with the pack's greedy parameters, through a KV-cache session:
    (indices (B, L), CFG-ramped logits (B, L, V))."""
    if "greedy" not in c.memo:
        c.memo["greedy"] = _greedy_decode(c)
    return c.memo["greedy"]


def _greedy_decode(c: Ctx) -> tuple[Tensor, Tensor]:
    g = c.cfg["sampling"]["ar_greedy"]
    sampling = SamplingConfig(cfg_scale=float(g["cfg"]), top_k=int(g["top_k"]),
                              top_p=float(g["top_p"]))
    s = c.teacher.start(c.cond, sampling)
    idx, logits = [], []
    while s.step < c.teacher.layout.num_steps:
        logits.append(s.next_logits())
        tok = s.next_probs().argmax(-1)  # top_k = 1: the multinomial has a single choice
        idx.append(tok)
        s.push(tok)
    return torch.cat(idx, 1), torch.cat(logits, 1)


def _ar_idx(c: Ctx) -> None:
    _vexact(_greedy_run(c)[0], c.io["ar_greedy_idx"])


def _ar_logits(c: Ctx) -> None:
    cfg = float(c.cfg["sampling"]["ar_greedy"]["cfg"])
    _vclose(_greedy_run(c)[1], c.io["ar_greedy_logits_cfg"], LOGITS_ATOL * max(1.0, cfg))


def _ar_img(c: Ctx) -> None:
    _vclose((c.teacher.decode_tokens(_greedy_run(c)[0]) + 1) / 2, c.io["ar_greedy_img"],
           FEATURE_ATOL)


CHECKS: dict[str, Callable[[Ctx], None]] = {
    "enc_idx": _enc_idx,
    "enc_rec": _enc_rec,
    "tf_x_BLCv_wo_first_l": _tf_x,
    "tf_logits_cond": _tf_cond,
    "tf_logits_null": _tf_null,
    "tf_logits_cfg": _tf_cfg,
    "tf_probs_s0": _probs("s0"),
    "tf_probs_s1": _probs("s1"),
    "tf_fhat_per_scale": _fhat_per_scale,
    "tf_img": _tf_img,
    "ar_greedy_idx": _ar_idx,
    "ar_greedy_logits_cfg": _ar_logits,
    "ar_greedy_img": _ar_img,
}


def test_every_io_entry_is_checked(ctx: Ctx) -> None:
    assert not (set(CHECKS) & INPUTS)
    assert set(CHECKS) | INPUTS == set(ctx.io), (
        f"unchecked: {sorted(set(ctx.io) - set(CHECKS) - INPUTS)}, "
        f"absent from the pack: {sorted((set(CHECKS) | INPUTS) - set(ctx.io))}")


def test_probability_entries_match_config(ctx: Ctx) -> None:
    names = {k.removeprefix("tf_probs_") for k in ctx.io
             if k.startswith("tf_probs_") and not k.endswith("_tie_safe")}
    assert names == set(ctx.cfg["sampling"]["probs"])


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_io_entry(ctx: Ctx, key: str) -> None:
    assert key in ctx.io, f"the pack has no {key!r}"
    CHECKS[key](ctx)


def test_constants_match_config(ctx: Ctx) -> None:
    t, cfg = ctx.teacher, ctx.cfg
    assert list(t.layout.patch_nums) == cfg["patch_nums"]
    assert t.layout.num_positions == cfg["L"] and t.layout.num_steps == cfg["K"]
    assert [[b, e] for b, e in t.model.cfg.begin_ends] == cfg["begin_ends"]
    assert t.vqvae.quantize.phi_index == cfg["phi_index_per_scale"]
    assert (t.vocab_size, t.codebook_dim, t.num_classes) == (cfg["V"], cfg["Cvae"],
                                                             cfg["num_classes"])
    assert t.image_size == cfg["image_size"] and t.vqvae.cfg.downsample == cfg["vae_downsample"]
    assert (t.model.cfg.width, t.model.cfg.heads, t.model.cfg.depth) == (
        cfg["embed_dim"], cfg["num_heads"], cfg["depth"])


# ---- the official DD intermediate_sample (README §5.2), through official_prefix_quirk ----
def test_quirk_reproduces_official_intermediate_sample(ctx: Ctx, oracle: Path) -> None:
    """`var_dd_io.pt` is the DD student's file (checked in full by its own oracle test); its
    `ti*.teacher_sequence` entries are pure teacher outputs: codebook vectors of the prefix
    scales followed by greedy teacher scales up to t_list[1]."""
    dd = torch.load(oracle / "var" / "var_dd_io.pt", map_location="cpu", weights_only=True)
    runs = ctx.cfg["dd"]["teacher_involved"]
    assert runs and torch.equal(dd["labels"], ctx.io["labels"])
    t, codebook = ctx.teacher, ctx.teacher.dd_codebook()
    for name, p in runs.items():
        k, end = int(p["t_teacher_start"]), int(p["t_list"][1])
        sampling = SamplingConfig(cfg_scale=float(p["cfg"]), top_k=int(p["top_k"]),
                                  top_p=float(p["top_p"]))
        prefix = None
        if k > 0:  # the snapped DD output: exact codewords, so the nearest row is exact
            x = dd[f"{name}.x_snapped"][:, : t.layout.begin(k)]
            dist = torch.cdist(x, codebook.expand(len(x), -1, -1),
                               compute_mode="donot_use_mm_for_euclid_dist")
            assert dist.min(-1).values.max() < 1e-5
            prefix = dist.argmin(-1)
        quirk = decode(t, ctx.cond, sampling, greedy_chooser, prefix=prefix, end_step=end,
                       official_prefix_quirk=True)
        _vclose(codebook[quirk], dd[f"{name}.teacher_sequence"], FEATURE_ATOL)
        if k > 1:  # the correct block-causal prefix gives another teacher continuation
            ok = decode(t, ctx.cond, sampling, greedy_chooser, prefix=prefix, end_step=end)
            assert not torch.equal(ok, quirk)


# ---- full-size presets vs the official key listings (README §6) ----
VAR_FULL_SIZE = {f"var_VAR-d{d}.json": f"var-d{d}" for d in (16, 20, 24, 30)}
VQVAE_KEYS = "var_VQVAE_ch160_V4096_z32.json"


def _compare_listing(module: torch.nn.Module, listing: dict) -> None:
    sd = module.state_dict()
    ref = listing["state_dict"]
    assert list(sd) == list(ref), set(sd) ^ set(ref)
    buffers = dict(module.named_buffers())
    for k, meta in ref.items():
        assert list(sd[k].shape) == meta["shape"], k
        assert str(sd[k].dtype).removeprefix("torch.") == meta["dtype"], k
        assert (k in buffers) == (meta["kind"] == "buffer"), k
    assert sum(p.numel() for p in module.parameters()) == listing["num_parameters"]
    assert sum(v.numel() for v in sd.values()) == listing["state_dict_numel"]
    assert len(sd) == listing["num_state_dict_keys"]


def test_pack_lists_the_var_teachers(oracle: Path) -> None:
    present = {p.name for p in (oracle / "keys").glob("var_VAR-*.json")}
    assert present == set(VAR_FULL_SIZE)
    assert (oracle / "keys" / VQVAE_KEYS).is_file()


@pytest.mark.parametrize("listing", sorted(VAR_FULL_SIZE))
def test_full_size_var_matches_official_keys(oracle: Path, listing: str) -> None:
    ref = json.loads((oracle / "keys" / listing).read_text())
    with torch.device("meta"):
        model = VAR(VAR_PRESETS[VAR_FULL_SIZE[listing]].model_config)
    _compare_listing(model, ref)


def test_full_size_vqvae_matches_official_keys(oracle: Path) -> None:
    ref = json.loads((oracle / "keys" / VQVAE_KEYS).read_text())
    official = [p for p in VAR_PRESETS.values() if not p.embedded]
    assert len(official) == 4
    for preset in official:
        with torch.device("meta"):
            vae = VQVAE(preset.tokenizer_config)
        _compare_listing(vae, ref)
