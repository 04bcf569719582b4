"""Every DD student of the oracle pack against the official outputs (oracle README §4.4, §5.2,
§6, §8): all entries of `llamagen/dd_student_io.pt` and `var/var_dd_io.pt`, the DD state dicts
loaded strictly, VAR's `init_with_teacher`, and the full-size DD key listings (LlamaGen-DD-B/L,
VAR-DD-d16/d20/d24).

Everything about the tiny models and the procedure (configs, timesteps, splits, few-step and
teacher-involved settings) is read from each family's `config.json`; the only stored input used
as such is the noise (labels, codebook, data tokens, X_t are recomputed and compared).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ardistill.student.llamagen import LlamaGenStudent, LlamaGenStudentConfig, load_student_state
from ardistill.student.procedure import (
    TeacherInvolvedTrace,
    few_step,
    final_predict,
    final_sequence,
    nearest_codes,
    step,
    teacher_involved,
)
from ardistill.student.var import VARStudent, VARStudentConfig, build_student, dd_level_buffers
from ardistill.student.var import load_student_state as load_var_student_state
from ardistill.teachers.base import Condition, SamplingConfig, dd_state, decode, greedy_chooser
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import load_gpt, load_vq
from ardistill.teachers.llamagen.presets import PRESETS
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher
from ardistill.teachers.var.config import from_official_build_args
from ardistill.teachers.var.presets import PRESETS as VAR_PRESETS
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.weights import load_var, load_vqvae
from ardistill.utils.checkpoint import read_state_dict
from oracle_checks import assert_close, assert_exact, assert_key_listing

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


_close, _exact = assert_close, assert_exact


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
    x_t = dd_state(student.layout, io["x_data"], io["noise"], tt)
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

_check_key_listing = assert_key_listing


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
    _check_key_listing(m, ref, OFFICIAL_COUNTS[model])


def test_every_llamagen_dd_key_listing_is_covered(oracle):
    files = {p.stem for p in (oracle / "keys").glob("llamagen_DD-*.json")}
    assert files == set(FULL_SIZE), "a LlamaGen DD key listing is not tested"


# ======================= VAR (oracle README §5.2) =======================

VAR_INPUTS = {"noise"}


@dataclass
class Ctx:
    cfg: dict
    io: dict[str, Tensor]
    teacher_io: dict[str, Tensor]
    teacher: VARTeacher
    student: VARStudent
    memo: dict = field(default_factory=dict)

    @property
    def dd(self) -> dict:
        return self.cfg["dd"]

    @property
    def cond(self) -> Condition:
        return Condition(labels=self.io["labels"])

    @property
    def codebook(self) -> Tensor:
        return self.teacher.dd_codebook()

    def cached(self, key: str, fn: Callable[[], object]):
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]


def _var_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a missing or unreadable entry fails, never skips
        pytest.fail(f"oracle {path} unreadable: {e}")


@pytest.fixture(scope="module")
def ctx(oracle: Path) -> Ctx:
    d = oracle / "var"
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        pytest.fail(f"oracle var/config.json unreadable: {e}")
    var_cfg, vae_cfg = from_official_build_args(cfg["build_vae_var_args"],
                                                cfg["vae_encoder_decoder_override"])
    model = load_var(var_cfg, d / "var_teacher_state_dict.pt", what="oracle VAR teacher")
    vae = load_vqvae(vae_cfg, d / "vqvae_state_dict.pt", what="oracle VQVAE")
    teacher = VARTeacher("oracle-var", model, vae, SamplingConfig())
    student = load_var_student_state(VARStudentConfig(var_cfg),
                                 read_state_dict(d / "var_dd_state_dict.pt"),
                                 what="oracle VAR DD student")
    return Ctx(cfg, _var_load(d / "var_dd_io.pt"), _var_load(d / "var_teacher_io.pt"),
               teacher, student)


def _var_close(got: Tensor, ref: Tensor, atol: float, what: str) -> None:
    assert_close(got, ref, atol, what, same_dtype=True)


def _var_exact(got: Tensor, ref: Tensor, what: str) -> None:
    assert_exact(got, ref, what, same_dtype=True)


def _var_image(c: Ctx, x: Tensor) -> Tensor:
    return (c.teacher.decode_latents(x) + 1) / 2  # official transfer_BLCv_to_B3HW: [0, 1]


# ---- the conditions and the data the DD states are built from ----
def _data_idx(c: Ctx) -> Tensor:
    def run() -> Tensor:
        g = c.cfg["sampling"]["ar_greedy"]
        s = SamplingConfig(cfg_scale=float(g["cfg"]), top_k=int(g["top_k"]),
                           top_p=float(g["top_p"]))
        return decode(c.teacher, c.cond, s, greedy_chooser)
    return c.cached("data_idx", run)


def _check_labels(c: Ctx) -> None:
    _var_exact(c.io["labels"], c.teacher_io["labels"], "labels")


def _check_data_idx(c: Ctx) -> None:
    _var_exact(_data_idx(c), c.io["data_idx"], "data_idx")


def _check_x_data(c: Ctx) -> None:
    _var_close(c.codebook[_data_idx(c)], c.io["x_data"], 0.0, "x_data")


# ---- one DD timestep: raw forward, final_predict, final (README §5.2) ----
def _timesteps(c: Ctx) -> dict[str, list[int]]:
    B = len(c.io["labels"])
    out = {f"t{t}": [int(t)] * B for t in c.dd["t_eval"]}
    out["tmix"] = [int(t) for t in c.dd["t_mixed"]]
    return out


def _run_t(c: Ctx, name: str) -> dict[str, Tensor]:
    def run() -> dict[str, Tensor]:
        tt = torch.tensor(_timesteps(c)[name], dtype=torch.long)
        x_t = dd_state(c.student.layout, c.codebook[_data_idx(c)], c.io["noise"], tt)
        with torch.no_grad():
            out = c.student(x_t, c.cond, tt)
        fp = final_predict(c.student.layout, out, x_t, tt, c.codebook)
        final = final_sequence(c.student.layout, fp, int(c.dd["split_t_eval"]), c.codebook)
        return {"t": tt, "x_t": x_t, "out": out, "fp": fp, "final": final}
    return c.cached(f"run.{name}", run)


def _t_check(name: str, key: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        r, ref = _run_t(c, name), c.io[f"{name}.{key}"]
        if key == "timestep":  # the official scripts pass float timesteps
            _var_exact(r["t"].float(), ref, key)
        elif key == "x_t":
            _var_close(r["x_t"], ref, 0.0, key)
        elif key in ("conti", "logits"):
            _var_close(getattr(r["out"], key), ref, ATOL_LOGITS if key == "logits" else ATOL_CONTI,
                   f"{name}.{key}")
        elif key == "fp_conti":
            _var_close(r["fp"].conti, ref, ATOL_CONTI, f"{name}.{key}")
        elif key == "fp_logits":
            _var_close(r["fp"].logits, ref, ATOL_LOGITS, f"{name}.{key}")
        else:
            _var_close(r["final"], ref, ATOL_CONTI, f"{name}.final")
            t = r["t"].tolist()
            if len(set(t)) == 1:  # the fast step (logits head restricted) gives the same
                fast = step(c.student, c.codebook[_data_idx(c)], c.io["noise"], c.cond, t[0],
                            int(c.dd["split_t_eval"]), c.codebook)
                _var_close(fast, ref, ATOL_CONTI, f"{name}.final (step)")
    return check


# ---- few-step sampling (VAR/sample.py) ----
def _few(c: Ctx, name: str) -> list[Tensor]:
    f = c.dd["fewstep"][name]
    return c.cached(f"fs.{name}", lambda: few_step(
        c.student, c.io["noise"], c.cond, f["t_list"], int(f["loss_split_t"]), c.codebook,
        return_all=True))


def _fs_check(name: str, key: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        xs, ref = _few(c, name), c.io[f"{name}.{key}"]
        assert len(xs) == len(c.dd["fewstep"][name]["t_list"])
        got = {"x_step1": xs[0], "x": xs[-1]}.get(key)
        if key == "img":
            _var_close(_var_image(c, xs[-1]), ref, ATOL_IMAGE, f"{name}.img")
        else:
            assert len(xs) > 1 or key == "x"
            _var_close(got, ref, ATOL_CONTI, f"{name}.{key}")
    return check


# ---- teacher-involved sampling (combine_sample.py, greedy teacher, official quirk) ----
def _ti(c: Ctx, name: str) -> TeacherInvolvedTrace:
    p = c.dd["teacher_involved"][name]

    def run() -> TeacherInvolvedTrace:
        s = SamplingConfig(cfg_scale=float(p["cfg"]), top_k=int(p["top_k"]),
                           top_p=float(p["top_p"]))
        return teacher_involved(c.student, c.teacher, c.io["noise"], c.cond, p["t_list"],
                                int(p["t_teacher_start"]), int(p["loss_split_t"]), c.codebook,
                                greedy_chooser, s, return_trace=True,
                                official_prefix_quirk=True)
    return c.cached(f"ti.{name}", run)


def _ti_check(name: str, key: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        tr, ref = _ti(c, name), c.io[f"{name}.{key}"]
        m = int(c.dd["teacher_involved"][name]["t_list"][1])
        if key == "x_step1":
            _var_close(tr.x_step1, ref, ATOL_CONTI, key)
        elif key == "x_snapped":
            _var_close(c.codebook[tr.snapped], ref, ATOL_CONTI, key)
        elif key == "teacher_sequence":
            assert tr.teacher_tokens.shape[1] == c.teacher.layout.begin(m)
            _var_close(c.codebook[tr.teacher_tokens], ref, ATOL_CONTI, key)
        elif key == "x_teacher":
            _var_close(tr.x_teacher, ref, ATOL_CONTI, key)
        elif key == "x":
            _var_close(tr.x, ref, ATOL_CONTI, key)
        else:
            _var_close(_var_image(c, tr.x), ref, ATOL_IMAGE, f"{name}.img")
    return check


def _var_checks(cfg: dict) -> dict[str, Callable[[Ctx], None]]:
    """One check per IO entry the pack's config implies."""
    dd = cfg["dd"]
    out: dict[str, Callable[[Ctx], None]] = {
        "labels": _check_labels, "data_idx": _check_data_idx, "x_data": _check_x_data}
    names = [f"t{t}" for t in dd["t_eval"]] + ["tmix"]
    all_zero = {f"t{t}": int(t) == 0 for t in dd["t_eval"]} | {"tmix": False}
    for n in names:
        keys = ["timestep", "x_t", "conti", "logits", "fp_conti", "final"]
        if not all_zero[n]:  # README: fp_logits only where some t > 0 (else the raw logits)
            keys.append("fp_logits")
        out.update({f"{n}.{k}": _t_check(n, k) for k in keys})
    for n, f in dd["fewstep"].items():
        keys = ["x", "img"] + (["x_step1"] if len(f["t_list"]) > 1 else [])
        out.update({f"{n}.{k}": _fs_check(n, k) for k in keys})
    for n, p in dd["teacher_involved"].items():
        keys = ["teacher_sequence", "x_teacher", "x", "img"]
        if int(p["t_teacher_start"]) > 0:
            keys += ["x_step1", "x_snapped"]
        out.update({f"{n}.{k}": _ti_check(n, k) for k in keys})
    return out


def test_every_io_entry_is_checked(ctx: Ctx) -> None:
    checks = _var_checks(ctx.cfg)
    assert not (set(checks) & VAR_INPUTS)
    assert set(checks) | VAR_INPUTS == set(ctx.io), (
        f"unchecked: {sorted(set(ctx.io) - set(checks) - VAR_INPUTS)}, "
        f"absent from the pack: {sorted((set(checks) | VAR_INPUTS) - set(ctx.io))}")


@pytest.fixture(scope="module")
def checks(ctx: Ctx) -> dict[str, Callable[[Ctx], None]]:
    return _var_checks(ctx.cfg)


def test_io_entries(ctx: Ctx, checks) -> None:
    """Every check, each reported by name on failure (all of them run)."""
    failures = []
    for key in sorted(checks):
        try:
            checks[key](ctx)
        except AssertionError as e:
            failures.append(f"{key}: {e}")
    assert not failures, "\n".join(failures)


# ---- the DD layout constants of the pack (README §5.2) ----
def test_constants_match_config(ctx: Ctx) -> None:
    s, m = ctx.student, ctx.cfg["dd_model"]
    assert list(s.config.patch_nums) == m["patch_nums"]
    assert s.config.seq_len == m["L"] == s.layout.num_positions + 1
    K = s.layout.num_steps
    # accum[i]: DD tokens from DD level i on; level i + 1 is teacher scale i
    accum = [s.config.seq_len] + [s.layout.num_positions - s.layout.begin(i)
                                  for i in range(K + 1)]
    assert accum == m["accum_token_length"]
    assert [s.layout.begin(t) for t in range(K)] == m["n_data_tokens_per_t"]
    assert [s.layout.begin(t) for t in range(K + 1)] == m["concat_pos_per_split_t"]


def test_buffers_equal_the_official_ones(ctx: Ctx, oracle: Path) -> None:
    sd = read_state_dict(oracle / "var" / "var_dd_state_dict.pt")
    lvl, bias = dd_level_buffers(ctx.student.config.patch_nums)
    assert torch.equal(lvl, sd["lvl_1L"]) and torch.equal(bias, sd["attn_bias_for_masking"])
    assert torch.equal(ctx.student.attn_bias_for_masking, sd["attn_bias_for_masking"])


def test_init_from_teacher_matches_official_init_with_teacher(ctx: Ctx, oracle: Path) -> None:
    """The pack's student was made by the official `init_with_teacher(var)` and then its
    DD-only weights were re-drawn: every copied weight equals ours, except class 1, which the
    official code re-draws by mistake (we keep the teacher's: build.py docstring)."""
    ref = read_state_dict(oracle / "var" / "var_dd_state_dict.pt")
    ours = build_student(ctx.teacher, generator=torch.Generator().manual_seed(1)).state_dict()
    assert list(ours) == list(ref)
    new = {"n_d_embed.weight", "final_layer_conti.scale_shift_table"} | {
        k for k in ref if k.startswith(("layerwise_n_d_embed.", "final_layer_conti.linear."))}
    for k in sorted(set(ref) - new):
        a, b = ours[k], ref[k]
        if k == "pos_1LC":  # position 1 (teacher scale 0's token) is new
            a, b = a[:, [0, *range(2, a.shape[1])]], b[:, [0, *range(2, b.shape[1])]]
        elif k == "lvl_embed.weight":  # level 1 is new
            a, b = a[[0, *range(2, len(a))]], b[[0, *range(2, len(b))]]
        elif k == "class_emb.weight":
            teacher_row1 = ctx.teacher.model.class_emb.weight[1]
            assert torch.equal(a[1], teacher_row1) and not torch.equal(b[1], teacher_row1)
            a, b = a[[0, *range(2, len(a))]], b[[0, *range(2, len(b))]]
        assert torch.equal(a, b), k


# ---- full-size students vs the official key listings (README §6, method.md §4) ----
VAR_FULL_SIZE = {f"var_DD-d{d}": f"var-d{d}" for d in (16, 20, 24)}
VAR_OFFICIAL_COUNTS = {"var_DD-d16": 328_165_664, "var_DD-d20": 635_399_088,
                   "var_DD-d24": 1_092_478_560}


@pytest.mark.parametrize("model", sorted(VAR_FULL_SIZE))
def test_full_size_var_students_match_official_keys(oracle: Path, model: str) -> None:
    path = oracle / "keys" / f"{model}.json"
    try:
        ref = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        pytest.fail(f"{path} unreadable: {e}")
    with torch.device("meta"):
        m = VARStudent(VARStudentConfig(VAR_PRESETS[VAR_FULL_SIZE[model]].model_config))
    _check_key_listing(m, ref, VAR_OFFICIAL_COUNTS[model])


def test_every_var_dd_key_listing_is_covered(oracle: Path) -> None:
    files = {p.stem for p in (oracle / "keys").glob("var_DD-*.json")}
    assert files == set(VAR_FULL_SIZE), "a VAR DD key listing is not tested"
