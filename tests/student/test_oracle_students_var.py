"""The VAR DD student and the DD procedure against the oracle pack (oracle README §5.2, §6, §8):
every entry of `var/var_dd_io.pt`, the DD state dict loaded strictly, `init_with_teacher`
against the pack's student, and the full-size DD key listings (d16 / d20 / d24).

Everything about the tiny models and the procedure (configs, timesteps, splits, few-step and
teacher-involved settings) is read from `var/config.json`; the only stored input used as such
is the noise (labels, data indices, x_data, timesteps and X_t are recomputed and compared).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ardistill.student.procedure import (
    TeacherInvolvedTrace,
    few_step,
    final_predict,
    final_sequence,
    perturb,
    step,
    teacher_involved,
)
from ardistill.student.var import (
    VARStudent,
    VARStudentConfig,
    build_student,
    dd_level_buffers,
    load_student_state,
)
from ardistill.teachers.base import Condition, SamplingConfig, decode, greedy_chooser
from ardistill.teachers.var.config import from_official_build_args
from ardistill.teachers.var.presets import PRESETS
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.weights import load_var, load_vqvae
from ardistill.utils.checkpoint import count_parameters, read_state_dict

ATOL_LOGITS = 2e-4  # README §8: raw logits
ATOL_CONTI = 1e-4  # DD continuous outputs and sequences
ATOL_IMAGE = 1e-4  # decoded images

INPUTS = {"noise"}


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


def _load(path: Path) -> dict:
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
    student = load_student_state(VARStudentConfig(var_cfg),
                                 read_state_dict(d / "var_dd_state_dict.pt"),
                                 what="oracle VAR DD student")
    return Ctx(cfg, _load(d / "var_dd_io.pt"), _load(d / "var_teacher_io.pt"), teacher, student)


def _close(got: Tensor, ref: Tensor, atol: float, what: str) -> None:
    """Max abs diff <= atol; -inf entries (one-hot logits) must coincide exactly."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} vs {ref.dtype}"
    inf_g, inf_r = torch.isinf(got), torch.isinf(ref)
    assert torch.equal(inf_g, inf_r), f"{what}: infinite entries differ"
    assert torch.equal(got[inf_g], ref[inf_r]), f"{what}: infinities of another sign"
    err = (got[~inf_g] - ref[~inf_r]).abs().max().item() if (~inf_g).any() else 0.0
    assert err <= atol, f"{what}: max abs diff {err:.3g} > {atol:.3g}"


def _exact(got: Tensor, ref: Tensor, what: str) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype, (
        f"{what}: {tuple(got.shape)} {got.dtype} vs {tuple(ref.shape)} {ref.dtype}")
    bad = (got != ref).sum().item()
    assert bad == 0, f"{what}: {bad} of {ref.numel()} entries differ"


def _image(c: Ctx, x: Tensor) -> Tensor:
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
    _exact(c.io["labels"], c.teacher_io["labels"], "labels")


def _check_data_idx(c: Ctx) -> None:
    _exact(_data_idx(c), c.io["data_idx"], "data_idx")


def _check_x_data(c: Ctx) -> None:
    _close(c.codebook[_data_idx(c)], c.io["x_data"], 0.0, "x_data")


# ---- one DD timestep: raw forward, final_predict, final (README §5.2) ----
def _timesteps(c: Ctx) -> dict[str, list[int]]:
    B = len(c.io["labels"])
    out = {f"t{t}": [int(t)] * B for t in c.dd["t_eval"]}
    out["tmix"] = [int(t) for t in c.dd["t_mixed"]]
    return out


def _run_t(c: Ctx, name: str) -> dict[str, Tensor]:
    def run() -> dict[str, Tensor]:
        tt = torch.tensor(_timesteps(c)[name], dtype=torch.long)
        x_t = perturb(c.student.layout, c.codebook[_data_idx(c)], c.io["noise"], tt)
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
            _exact(r["t"].float(), ref, key)
        elif key == "x_t":
            _close(r["x_t"], ref, 0.0, key)
        elif key in ("conti", "logits"):
            _close(getattr(r["out"], key), ref, ATOL_LOGITS if key == "logits" else ATOL_CONTI,
                   f"{name}.{key}")
        elif key == "fp_conti":
            _close(r["fp"].conti, ref, ATOL_CONTI, f"{name}.{key}")
        elif key == "fp_logits":
            _close(r["fp"].logits, ref, ATOL_LOGITS, f"{name}.{key}")
        else:
            _close(r["final"], ref, ATOL_CONTI, f"{name}.final")
            t = r["t"].tolist()
            if len(set(t)) == 1:  # the fast step (logits head restricted) gives the same
                fast = step(c.student, c.codebook[_data_idx(c)], c.io["noise"], c.cond, t[0],
                            int(c.dd["split_t_eval"]), c.codebook)
                _close(fast, ref, ATOL_CONTI, f"{name}.final (step)")
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
            _close(_image(c, xs[-1]), ref, ATOL_IMAGE, f"{name}.img")
        else:
            assert len(xs) > 1 or key == "x"
            _close(got, ref, ATOL_CONTI, f"{name}.{key}")
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
            _close(tr.x_step1, ref, ATOL_CONTI, key)
        elif key == "x_snapped":
            _close(c.codebook[tr.snapped], ref, ATOL_CONTI, key)
        elif key == "teacher_sequence":
            assert tr.teacher_tokens.shape[1] == c.teacher.layout.begin(m)
            _close(c.codebook[tr.teacher_tokens], ref, ATOL_CONTI, key)
        elif key == "x_teacher":
            _close(tr.x_teacher, ref, ATOL_CONTI, key)
        elif key == "x":
            _close(tr.x, ref, ATOL_CONTI, key)
        else:
            _close(_image(c, tr.x), ref, ATOL_IMAGE, f"{name}.img")
    return check


def _checks(cfg: dict) -> dict[str, Callable[[Ctx], None]]:
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
    checks = _checks(ctx.cfg)
    assert not (set(checks) & INPUTS)
    assert set(checks) | INPUTS == set(ctx.io), (
        f"unchecked: {sorted(set(ctx.io) - set(checks) - INPUTS)}, "
        f"absent from the pack: {sorted((set(checks) | INPUTS) - set(ctx.io))}")


@pytest.fixture(scope="module")
def checks(ctx: Ctx) -> dict[str, Callable[[Ctx], None]]:
    return _checks(ctx.cfg)


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
FULL_SIZE = {f"var_DD-d{d}": f"var-d{d}" for d in (16, 20, 24)}
OFFICIAL_COUNTS = {"var_DD-d16": 328_165_664, "var_DD-d20": 635_399_088,
                   "var_DD-d24": 1_092_478_560}


@pytest.mark.parametrize("model", sorted(FULL_SIZE))
def test_full_size_students_match_official_keys(oracle: Path, model: str) -> None:
    path = oracle / "keys" / f"{model}.json"
    try:
        ref = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        pytest.fail(f"{path} unreadable: {e}")
    with torch.device("meta"):
        m = VARStudent(VARStudentConfig(PRESETS[FULL_SIZE[model]].model_config))
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


def test_every_var_dd_key_listing_is_covered(oracle: Path) -> None:
    files = {p.stem for p in (oracle / "keys").glob("var_DD-*.json")}
    assert files == set(FULL_SIZE), "a VAR DD key listing is not tested"
