"""The LlamaGen DD student and the DD procedure against the oracle pack (oracle README §4.4, §6,
§8): every entry of `llamagen/dd_student_io.pt` and the full-size DD key listings.

Everything about the tiny models and the procedure (configs, timesteps, splits, few-step and
teacher-involved settings) is read from `llamagen/config.json`; the only stored input used as
such is the noise (labels, codebook, data tokens are recomputed from the teacher and the VQ).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ardistill.student.llamagen import LlamaGenStudent, LlamaGenStudentConfig, load_student_state
from ardistill.student.procedure import (
    few_step,
    final_predict,
    final_sequence,
    nearest_codes,
    perturb,
    step,
    teacher_involved,
)
from ardistill.teachers.base import Condition, SamplingConfig, decode, greedy_chooser
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import load_gpt, load_vq
from ardistill.teachers.llamagen.presets import PRESETS
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher
from ardistill.utils.checkpoint import count_parameters, read_state_dict

ATOL_LOGITS = 2e-4  # README §8: raw logits
ATOL_CONTI = 1e-4  # DD continuous outputs, sequences
ATOL_IMAGE = 1e-4  # decoded images


@pytest.fixture(scope="module")
def pack(oracle: Path) -> dict:
    d = oracle / "llamagen"
    try:
        cfg = json.loads((d / "config.json").read_text())
        io = torch.load(d / "dd_student_io.pt", weights_only=True)
        c2i_io = torch.load(d / "c2i_teacher_io.pt", weights_only=True)
    except Exception as e:  # a missing or unreadable entry fails, never skips
        pytest.fail(f"oracle llamagen pack unreadable at {d}: {e}")
    return {"dir": d, "cfg": cfg, "io": io, "c2i_io": c2i_io}


@pytest.fixture(scope="module")
def teacher(pack) -> LlamaGenTeacher:
    c, d = pack["cfg"], pack["dir"]
    vcfg = VQConfig.from_official(c["vq"]["model_args"], c["vq"]["encoder_decoder_override"])
    vq = load_vq(vcfg, read_state_dict(d / "vq_state_dict.pt"), what="oracle VQ")
    gcfg = GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"])
    gpt = load_gpt(gcfg, read_state_dict(d / "c2i_teacher_state_dict.pt"), what="oracle c2i")
    return LlamaGenTeacher("oracle-c2i", gpt, vq, SamplingConfig())


@pytest.fixture(scope="module")
def student(pack) -> LlamaGenStudent:
    cfg = LlamaGenStudentConfig.from_official(pack["cfg"]["dd_student"]["model_args_resolved"])
    sd = read_state_dict(pack["dir"] / "dd_student_state_dict.pt")
    return load_student_state(cfg, sd, what="oracle DD student")


def _close(got: torch.Tensor, ref: torch.Tensor, atol: float, what: str) -> None:
    """Max abs diff <= atol; -inf entries (one-hot logits) must coincide exactly."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    inf_g, inf_r = torch.isinf(got), torch.isinf(ref)
    assert torch.equal(inf_g, inf_r), f"{what}: infinite entries differ"
    assert torch.equal(got[inf_g], ref[inf_r]), f"{what}: infinities of another sign"
    err = (got[~inf_g].float() - ref[~inf_r].float()).abs().max().item() if got.numel() else 0.0
    assert err <= atol, f"{what}: max abs diff {err:.3g} > {atol:.3g}"


def _exact(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    bad = (got.long() != ref.long()).sum().item()
    assert bad == 0, f"{what}: {bad} of {ref.numel()} entries differ"


def _image(teacher: LlamaGenTeacher, x: torch.Tensor) -> torch.Tensor:
    return (teacher.decode_latents(x) + 1) / 2  # eval_fewstep.py: not clamped


def _check_inputs(pack, teacher, checked: set) -> tuple[Condition, torch.Tensor]:
    """labels, codebook, data_tokens, x_data: recomputed from the teacher and the VQ."""
    io, c2i_io = pack["io"], pack["c2i_io"]
    _exact(io["labels"], c2i_io["labels"], "labels")
    cond = Condition(labels=io["labels"])
    codebook = teacher.dd_codebook()
    _close(codebook, io["codebook"], 1e-6, "codebook")
    greedy = SamplingConfig(**pack["cfg"]["c2i_teacher"]["sampling"]["greedy"])
    _exact(decode(teacher, cond, greedy, greedy_chooser), io["data_tokens"], "data_tokens")
    assert io["data_tokens"].dtype == torch.int64
    _close(codebook[io["data_tokens"]], io["x_data"], 0.0, "x_data")
    checked |= {"labels", "codebook", "data_tokens", "x_data"}
    return cond, codebook


def _check_timestep(pack, student, cond, codebook, name: str, t: list[int], checked: set):
    """Raw forward, gt_idx, final_predict and the per-t `final` at timesteps t (one per row)."""
    io, split = pack["io"], pack["cfg"]["dd_student"]["split_t_eval"]
    tt = torch.tensor(t, dtype=torch.long)
    _exact(tt, io[f"{name}.timestep"], f"{name}.timestep")
    x_t = perturb(student.layout, io["x_data"], io["noise"], tt)
    _close(x_t, io[f"{name}.x_t"], 0.0, f"{name}.x_t")
    with torch.no_grad():
        out = student(x_t, cond, tt)
    _close(out.conti, io[f"{name}.tokens"], ATOL_CONTI, f"{name}.tokens")
    _close(out.logits, io[f"{name}.logits"], ATOL_LOGITS, f"{name}.logits")
    _exact(nearest_codes(x_t, codebook), io[f"{name}.gt_idx"], f"{name}.gt_idx")
    fp = final_predict(student.layout, out, x_t, tt, codebook)
    _close(fp.conti, io[f"{name}.fp_tokens"], ATOL_CONTI, f"{name}.fp_tokens")
    if f"{name}.fp_logits" in io:
        _close(fp.logits, io[f"{name}.fp_logits"], ATOL_LOGITS, f"{name}.fp_logits")
        checked.add(f"{name}.fp_logits")
    else:  # README §4.4: stored only where some t > 0; at t = 0 final_predict is the raw output
        assert all(v == 0 for v in t) and fp is out
    final = final_sequence(student.layout, fp, split, codebook)
    _close(final, io[f"{name}.final"], ATOL_CONTI, f"{name}.final")
    if len(set(t)) == 1:  # the fast `step` (logits head restricted) gives the same sequence
        fast = step(student, io["x_data"], io["noise"], cond, t[0], split, codebook)
        _close(fast, io[f"{name}.final"], ATOL_CONTI, f"{name}.final (step)")
    for k in ("timestep", "x_t", "tokens", "logits", "gt_idx", "fp_tokens", "final"):
        checked.add(f"{name}.{k}")


def _check_few_step(pack, student, teacher, cond, codebook, checked: set) -> None:
    io = pack["io"]
    for name, f in pack["cfg"]["dd_student"]["fewstep"].items():
        xs = few_step(student, io["noise"], cond, f["t_list"], f["split_t"], codebook,
                      return_all=True)
        assert len(xs) == len(f["t_list"])
        if len(xs) > 1:
            _close(xs[0], io[f"{name}.x_step1"], ATOL_CONTI, f"{name}.x_step1")
            checked.add(f"{name}.x_step1")
        _close(xs[-1], io[f"{name}.x"], ATOL_CONTI, f"{name}.x")
        _close(_image(teacher, xs[-1]), io[f"{name}.img"], ATOL_IMAGE, f"{name}.img")
        checked |= {f"{name}.x", f"{name}.img"}


def _check_teacher_involved(pack, student, teacher, cond, codebook, checked: set) -> None:
    io = pack["io"]
    for name, ti in pack["cfg"]["dd_student"]["teacher_involved"].items():
        sampling = SamplingConfig(cfg_scale=ti["cfg_scale"], cfg_interval=ti["cfg_interval"],
                                  temperature=ti["temperature"], top_k=ti["top_k"],
                                  top_p=ti["top_p"])
        n = ti["teacher_start_t"]
        tr = teacher_involved(student, teacher, io["noise"], cond, ti["t_list"], n,
                              ti["split_t"], codebook, greedy_chooser, sampling,
                              return_trace=True)
        _close(tr.x_step1, io[f"{name}.x_step1"], ATOL_CONTI, f"{name}.x_step1")
        _exact(tr.snapped[:, :n], io[f"{name}.prefix_idx"], f"{name}.prefix_idx")
        _exact(tr.teacher_tokens, io[f"{name}.teacher_tokens"], f"{name}.teacher_tokens")
        _close(tr.x_teacher, io[f"{name}.x_teacher"], ATOL_CONTI, f"{name}.x_teacher")
        _close(tr.x, io[f"{name}.x"], ATOL_CONTI, f"{name}.x")
        _close(_image(teacher, tr.x), io[f"{name}.img"], ATOL_IMAGE, f"{name}.img")
        for k in ("x_step1", "prefix_idx", "teacher_tokens", "x_teacher", "x", "img"):
            checked.add(f"{name}.{k}")


def test_dd_student_reproduces_every_output(pack, teacher, student):
    dd = pack["cfg"]["dd_student"]
    checked: set[str] = set()
    inputs = {"noise"}
    cond, codebook = _check_inputs(pack, teacher, checked)
    for t in dd["t_eval"]:
        _check_timestep(pack, student, cond, codebook, f"t{t}", [t] * len(cond), checked)
    _check_timestep(pack, student, cond, codebook, "tmix", list(dd["t_mixed"]), checked)
    _check_few_step(pack, student, teacher, cond, codebook, checked)
    _check_teacher_involved(pack, student, teacher, cond, codebook, checked)
    diff = set(pack["io"]) ^ (checked | inputs)
    assert not diff, f"entries unchecked (extra in the pack) or missing from it: {sorted(diff)}"


# ----------------------------------------------------------------------------- full size

FULL_SIZE = {"llamagen_DD-B": "llamagen-b", "llamagen_DD-L": "llamagen-l"}
OFFICIAL_COUNTS = {"llamagen_DD-B": 98_321_672, "llamagen_DD-L": 326_155_272}  # method.md §4


@pytest.mark.parametrize("model", sorted(FULL_SIZE))
def test_full_size_students_match_official_keys(oracle, model):
    path = oracle / "keys" / f"{model}.json"
    try:
        ref = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        pytest.fail(f"{path} unreadable: {e}")
    preset = PRESETS[FULL_SIZE[model]]
    cfg = LlamaGenStudentConfig.from_teacher(preset.model_config,
                                             preset.tokenizer_config.codebook_embed_dim)
    with torch.device("meta"):
        m = LlamaGenStudent(cfg)
    sd = m.state_dict()
    params = dict(m.named_parameters())
    assert list(sd) == list(ref["state_dict"]), "keys or their order differ"
    assert len(sd) == ref["num_state_dict_keys"]
    for k, spec in ref["state_dict"].items():
        assert list(sd[k].shape) == spec["shape"], f"{k}: {tuple(sd[k].shape)} vs {spec['shape']}"
        assert str(sd[k].dtype).removeprefix("torch.") == spec["dtype"], k
        assert (k in params) == (spec["kind"] == "parameter"), f"{k}: parameter vs buffer"
    assert count_parameters(m) == ref["num_parameters"] == OFFICIAL_COUNTS[model]
    assert sum(v.numel() for v in sd.values()) == ref["state_dict_numel"]


def test_every_llamagen_dd_key_listing_is_covered(oracle):
    files = {p.stem for p in (oracle / "keys").glob("llamagen_DD-*.json")}
    assert files == set(FULL_SIZE), "a LlamaGen DD key listing is not tested"
