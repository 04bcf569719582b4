"""LlamaGen teachers and VQ tokenizer against the oracle pack (oracle README §4.1-4.3, §6, §8).

Everything about the tiny models (configs, sampling parameters, grid) is read from
`llamagen/config.json`, so the same file passes on any pack of this format. Each IO file is
checked for coverage: declared inputs + compared outputs == every key it holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ardistill.teachers.base import Condition, SamplingConfig, decode, greedy_chooser
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.llamagen.loading import load_gpt, load_vq
from ardistill.teachers.llamagen.presets import PRESETS
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher, caption_attention_mask
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.utils.checkpoint import count_parameters, read_state_dict

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


def _close(got: torch.Tensor, ref: torch.Tensor, atol: float, what: str) -> None:
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    err = (got.float() - ref.float()).abs().max().item()
    assert err <= atol, f"{what}: max abs diff {err:.3g} > {atol:.3g}"


def _exact(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    bad = (got.long() != ref.long()).sum().item()
    assert bad == 0, f"{what}: {bad} of {ref.numel()} entries differ"


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
    sd = m.state_dict()
    params = dict(m.named_parameters())
    assert list(sd) == list(ref["state_dict"]), "keys or their order differ"
    assert len(sd) == ref["num_state_dict_keys"]
    for k, spec in ref["state_dict"].items():
        assert list(sd[k].shape) == spec["shape"], f"{k}: {tuple(sd[k].shape)} vs {spec['shape']}"
        assert str(sd[k].dtype).removeprefix("torch.") == spec["dtype"], k
        assert (k in params) == (spec["kind"] == "parameter"), f"{k}: parameter vs buffer"
    assert count_parameters(m) == ref["num_parameters"]
    assert sum(v.numel() for v in sd.values()) == ref["state_dict_numel"]


def test_every_llamagen_key_listing_is_covered(oracle):
    teacher_files = {p.stem for p in (oracle / "keys").glob("llamagen_*.json")
                     if not p.stem.startswith("llamagen_DD-")}
    assert teacher_files == set(FULL_SIZE), "a LlamaGen teacher key listing is not tested"
