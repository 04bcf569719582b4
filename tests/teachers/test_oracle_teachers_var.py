"""Oracle tests, VAR side: the pack's tiny official VAR teacher and multi-scale VQVAE load
strictly into our classes and reproduce every stored output of `var/var_teacher_io.pt`
within the pack's tolerances (oracle README §5.1, §8); the full-size presets have exactly the
official keys, shapes, dtypes and parameter counts (README §6).

Everything about sizes and sampling parameters is read from the pack's `config.json`, so the
same file passes on any pack of this format. Every IO entry is either a declared input or
has a check below; `test_every_io_entry_is_checked` fails on a missing or an extra entry.
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
from ardistill.teachers.var.config import from_official_build_args
from ardistill.teachers.var.model import VAR
from ardistill.teachers.var.presets import PRESETS
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.teachers.var.weights import load_var, load_vqvae

# Tolerances of README §8.
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


def _close(got: Tensor, ref: Tensor, atol: float) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype
    torch.testing.assert_close(got, ref, atol=atol, rtol=0)


def _exact(got: Tensor, ref: Tensor) -> None:
    assert got.dtype == ref.dtype and torch.equal(got, ref), (got != ref).sum()


# ---- one check per stored output ----
def _enc_idx(c: Ctx) -> None:
    _exact(c.teacher.encode_images(c.io["image"]), c.io["enc_idx"])


def _enc_rec(c: Ctx) -> None:
    _close(c.teacher.decode_tokens(c.io["enc_idx"]), c.io["enc_rec"], FEATURE_ATOL)


def _tf_x(c: Ctx) -> None:
    q, vae = c.teacher.vqvae.quantize, c.teacher.vqvae
    with torch.no_grad():
        x = q.indices_to_var_input(vae.split_scales(c.io["tf_idx"]))
    _close(x, c.io["tf_x_BLCv_wo_first_l"], FEATURE_ATOL)


def _tf_both(c: Ctx) -> Tensor:
    # cond and null as one 2B batch, conditional half first (as the pack computed them)
    lab = c.io["labels"]
    both = Condition(labels=torch.cat((lab, torch.full_like(lab, c.teacher.num_classes))))
    return c.teacher.forward_logits(c.io["tf_idx"], both)


def _tf_cond(c: Ctx) -> None:
    _close(_tf_both(c)[: len(c.io["labels"])], c.io["tf_logits_cond"], LOGITS_ATOL)


def _tf_null(c: Ctx) -> None:
    _close(_tf_both(c)[len(c.io["labels"]):], c.io["tf_logits_null"], LOGITS_ATOL)


def _tf_cfg(c: Ctx) -> None:
    got = c.teacher.guided_logits(c.io["tf_idx"], c.cond, c.sampling())
    _close(got, c.io["tf_logits_cfg"], LOGITS_ATOL * max(1.0, c.cfg_scale))


def _probs(name: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        p = c.cfg["sampling"]["probs"][name]
        got = c.teacher.guided_probs(c.io["tf_idx"], c.cond,
                                     c.sampling(top_k=p["top_k"], top_p=p["top_p"]))
        ref, safe = c.io[f"tf_probs_{name}"], c.io[f"tf_probs_{name}_tie_safe"]
        assert got.shape == ref.shape and safe.any()
        _close(got[safe], ref[safe], PROBS_ATOL)
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
    _close(got, c.io["tf_fhat_per_scale"], FEATURE_ATOL)


def _tf_img(c: Ctx) -> None:
    _close((c.teacher.decode_tokens(c.io["tf_idx"]) + 1) / 2, c.io["tf_img"], FEATURE_ATOL)


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
    _exact(_greedy_run(c)[0], c.io["ar_greedy_idx"])


def _ar_logits(c: Ctx) -> None:
    cfg = float(c.cfg["sampling"]["ar_greedy"]["cfg"])
    _close(_greedy_run(c)[1], c.io["ar_greedy_logits_cfg"], LOGITS_ATOL * max(1.0, cfg))


def _ar_img(c: Ctx) -> None:
    _close((c.teacher.decode_tokens(_greedy_run(c)[0]) + 1) / 2, c.io["ar_greedy_img"],
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
        _close(codebook[quirk], dd[f"{name}.teacher_sequence"], FEATURE_ATOL)
        if k > 1:  # the correct block-causal prefix gives another teacher continuation
            ok = decode(t, ctx.cond, sampling, greedy_chooser, prefix=prefix, end_step=end)
            assert not torch.equal(ok, quirk)


# ---- full-size presets vs the official key listings (README §6) ----
FULL_SIZE = {f"var_VAR-d{d}.json": f"var-d{d}" for d in (16, 20, 24, 30)}
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
    assert present == set(FULL_SIZE)
    assert (oracle / "keys" / VQVAE_KEYS).is_file()


@pytest.mark.parametrize("listing", sorted(FULL_SIZE))
def test_full_size_var_matches_official_keys(oracle: Path, listing: str) -> None:
    ref = json.loads((oracle / "keys" / listing).read_text())
    with torch.device("meta"):
        model = VAR(PRESETS[FULL_SIZE[listing]].model_config)
    _compare_listing(model, ref)


def test_full_size_vqvae_matches_official_keys(oracle: Path) -> None:
    ref = json.loads((oracle / "keys" / VQVAE_KEYS).read_text())
    for preset in PRESETS.values():
        with torch.device("meta"):
            vae = VQVAE(preset.tokenizer_config)
        _compare_listing(vae, ref)
