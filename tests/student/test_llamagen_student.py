"""The LlamaGen DD student on tiny real models (configs from the oracle's config.json): init
from the teacher, strict loading and its errors, the logits-head restriction, causality, text
conditions, bf16, torch.compile."""

from __future__ import annotations

import json

import pytest
import torch

from ardistill.errors import CheckpointError
from ardistill.student.base import Student
from ardistill.student.llamagen import (
    LlamaGenStudent,
    LlamaGenStudentConfig,
    build_student,
    load_student,
    load_student_state,
)
from ardistill.teachers.base import Condition, SamplingConfig
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import random_gpt, random_vq
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher


@pytest.fixture(scope="module")
def cfgs(oracle):
    c = json.loads((oracle / "llamagen" / "config.json").read_text())
    return {
        "c2i": GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"]),
        "t2i": GPTConfig.from_official(c["t2i_teacher"]["model_args_resolved"]),
        "vq": VQConfig.from_official(c["vq"]["model_args"], c["vq"]["encoder_decoder_override"]),
    }


def make_teacher(cfgs, kind: str, seed: int = 0, **gpt_overrides) -> LlamaGenTeacher:
    gen = torch.Generator().manual_seed(seed)
    gpt = random_gpt(cfgs[kind].replace(**gpt_overrides), generator=gen)
    vq = random_vq(cfgs["vq"], generator=gen)
    return LlamaGenTeacher(f"tiny-{kind}", gpt, vq, SamplingConfig(cfg_scale=2.0))


def randomise_new_weights(student: LlamaGenStudent, seed: int = 1) -> LlamaGenStudent:
    """Freshly initialised students have near-zero DD weights (N(0, 0.02)); behaviour tests
    want every part of the network to matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (student.tok_embeddings.weight, student.tok_embeddings.bias,
                  student.n_d_embed.weight, student.final_layer_conti.linear.weight,
                  student.final_layer_conti.linear.bias):
            p.copy_(torch.randn(p.shape, generator=g))
        student.output.weight.mul_(20.0)
    return student


@pytest.fixture(scope="module")
def c2i(cfgs):
    return make_teacher(cfgs, "c2i")


@pytest.fixture(scope="module")
def t2i(cfgs):
    return make_teacher(cfgs, "t2i")


@pytest.fixture(scope="module")
def student(c2i):
    return randomise_new_weights(build_student(c2i))


def inputs(student, b: int = 2, seed: int = 0, t: int = 5):
    g = torch.Generator().manual_seed(seed)
    n, d = student.layout.num_positions, student.codebook_dim
    x = torch.randn(b, n, d, generator=g)
    labels = torch.randint(0, 1000, (b,), generator=g)
    return x, Condition(labels=labels), torch.full((b,), t, dtype=torch.long)


def caption_cond(cfg: GPTConfig, valid: list[int], seed: int = 0) -> Condition:
    g = torch.Generator().manual_seed(seed)
    t = cfg.cls_token_num
    mask = torch.zeros(len(valid), t, dtype=torch.bool)
    for i, n in enumerate(valid):
        mask[i, t - n :] = True  # left-padded: valid tokens at the end
    cap = torch.randn(len(valid), t, cfg.caption_dim, generator=g) * mask[..., None]
    return Condition(caption=cap, caption_mask=mask)


# ----------------------------------------------------------------------------- init


def test_init_copies_teacher_weights_and_draws_new_ones(c2i):
    s = build_student(c2i, generator=torch.Generator().manual_seed(3))
    assert isinstance(s, Student) and not s.training
    t_sd, s_sd = c2i.gpt.state_dict(), s.state_dict()
    copied = [k for k in t_sd if k != "tok_embeddings.weight"]
    for k in copied:
        assert torch.equal(s_sd[k], t_sd[k]), f"{k} not copied from the teacher"
    dim = c2i.gpt.config.dim
    assert torch.equal(s.tok_embeddings.bias, torch.zeros(dim))
    assert torch.equal(s.final_layer_conti.linear.bias, torch.zeros(s.codebook_dim))
    for name, std in [("tok_embeddings.weight", 0.02), ("n_d_embed.weight", 0.02),
                      ("final_layer_conti.linear.weight", 0.02),
                      ("final_layer_conti.scale_shift_table", dim**-0.5)]:
        w = s_sd[name]
        assert abs(w.mean().item()) < 4 * std / w.numel() ** 0.5, name
        assert abs(w.std().item() / std - 1) < 0.25, f"{name}: std {w.std().item():.4g}"
    again = build_student(c2i, generator=torch.Generator().manual_seed(3))
    other = build_student(c2i, generator=torch.Generator().manual_seed(4))
    assert torch.equal(again.n_d_embed.weight, s.n_d_embed.weight)
    assert not torch.equal(other.n_d_embed.weight, s.n_d_embed.weight)


def test_init_without_null_row_and_t2i(cfgs, t2i):
    nodrop = make_teacher(cfgs, "c2i", class_dropout_prob=0.0)
    rows = nodrop.gpt.cls_embedding.embedding_table.weight
    assert rows.shape[0] == 1000
    s = build_student(nodrop)
    table = s.cls_embedding.embedding_table.weight
    assert table.shape[0] == 1001 and torch.equal(table[:1000], rows)
    assert 0.01 < table[1000].std().item() < 0.03  # the null row is new: N(0, 0.02)
    st = build_student(t2i)
    for k, v in t2i.gpt.cls_embedding.state_dict().items():
        assert torch.equal(st.cls_embedding.state_dict()[k], v), k
    assert torch.equal(st.layers[0].attention.wqkv.weight, t2i.gpt.layers[0].attention.wqkv.weight)


def test_build_student_device_dtype_and_bad_teacher(c2i):
    s = build_student(c2i, dtype=torch.bfloat16)
    assert s.dtype == torch.bfloat16 and s.device.type == "cpu"
    with pytest.raises(ValueError, match="not a LlamaGen teacher"):
        build_student(object())


# ----------------------------------------------------------------------------- loading


def test_load_roundtrip_files_and_wrappers(c2i, student, tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.detach().clone() for k, v in student.state_dict().items()}
    torch.save({"ema": sd, "model": {k: v * 0 for k, v in sd.items()}}, tmp_path / "dd.pt")
    save_file(sd, str(tmp_path / "dd.safetensors"))
    x, cond, t = inputs(student)
    with torch.no_grad():
        ref = student(x, cond, t)
        for path in (tmp_path / "dd.pt", tmp_path / "dd.safetensors"):
            got = load_student(c2i, path)(x, cond, t)
            assert torch.equal(got.conti, ref.conti) and torch.equal(got.logits, ref.logits)
    with_cache = dict(sd, **{"layers.0.attention.kv_cache.k_cache": torch.zeros(1, 4, 8, 16)})
    load_student(c2i, with_cache)  # transient KV caches are dropped


def test_strict_load_errors_name_the_problem(c2i, student, cfgs):
    sd = dict(student.state_dict())
    cfg = LlamaGenStudentConfig.from_teacher(cfgs["c2i"], 8)
    missing = {k: v for k, v in sd.items() if k != "final_layer_conti.scale_shift_table"}
    with pytest.raises(CheckpointError, match="final_layer_conti.scale_shift_table"):
        load_student_state(cfg, missing)
    with pytest.raises(CheckpointError, match="not in the model.*extra.weight"):
        load_student_state(cfg, dict(sd, **{"extra.weight": torch.zeros(1)}))
    bad = dict(sd, **{"tok_embeddings.bias": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"tok_embeddings.bias.*\(3,\).*\(64,\)"):
        load_student_state(cfg, bad)
    with pytest.raises(CheckpointError, match="teacher GPT.*not a DD student"):
        load_student(c2i, c2i.gpt.state_dict())
    with pytest.raises(CheckpointError, match="VAR"):
        load_student(c2i, {"blocks.0.attn.mat_qkv.weight": torch.zeros(3, 1)})
    wide = LlamaGenStudent(LlamaGenStudentConfig.from_teacher(cfgs["c2i"].replace(dim=128), 8))
    with pytest.raises(CheckpointError, match="dim=128.*dim=64"):
        load_student(c2i, wide.state_dict())
    with pytest.raises(CheckpointError, match="not found"):
        load_student(c2i, "/nonexistent/dd.pt")


# ----------------------------------------------------------------------------- forward


def test_logits_range_equals_full_forward(student):
    x, cond, t = inputs(student, t=7)
    n = student.layout.num_positions
    with torch.no_grad():
        full = student(x, cond, t)
        assert full.conti.shape == (2, n, student.codebook_dim)
        assert full.logits.shape == (2, n, student.vocab_size)
        assert full.logits.dtype == torch.float32
        for lo, hi in [(0, 20), (7, 30), (10, 10), (0, n)]:
            part = student(x, cond, t, logits_range=(lo, hi))
            assert part.logits.shape == (2, hi - lo, student.vocab_size)
            torch.testing.assert_close(part.logits, full.logits[:, lo:hi], atol=1e-5, rtol=0)
            torch.testing.assert_close(part.conti, full.conti, atol=0, rtol=0)
    for bad in [(5, 4), (-1, 3), (0, n + 1)]:
        with pytest.raises(ValueError, match="logits_range"):
            student(x, cond, t, logits_range=bad)


def test_outputs_are_causal_and_t_marks_the_data_positions(student):
    j = 30
    x, cond, t = inputs(student, t=j)
    x2 = x.clone()
    x2[:, j] += 1.0
    with torch.no_grad():
        a, b = student(x, cond, t), student(x2, cond, t)
        torch.testing.assert_close(a.logits[:, :j], b.logits[:, :j], atol=1e-5, rtol=0)
        torch.testing.assert_close(a.conti[:, :j], b.conti[:, :j], atol=1e-5, rtol=0)
        assert (a.conti[:, j] - b.conti[:, j]).abs().max() > 1e-3  # row j sees x_j itself
        # t = j + 1 turns position j from noise into data (n_d_embed): rows before j are
        # unchanged, row j and the later ones change
        c = student(x, cond, t + 1)
        torch.testing.assert_close(a.conti[:, :j], c.conti[:, :j], atol=1e-5, rtol=0)
        assert (a.conti[:, j] - c.conti[:, j]).abs().max() > 1e-3
        assert (a.logits[:, j + 1] - c.logits[:, j + 1]).abs().max() > 1e-3


def test_t2i_student_ignores_padded_caption_rows(t2i, cfgs):
    s = randomise_new_weights(build_student(t2i))
    cond = caption_cond(cfgs["t2i"], [45, 113])
    n = s.layout.num_positions
    x = torch.randn(2, n, s.codebook_dim, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 9])
    noisy = cond.caption + 5.0 * (~cond.caption_mask)[..., None]  # change only padded rows
    with torch.no_grad():
        a = s(x, cond, t)
        b = s(x, Condition(caption=noisy, caption_mask=cond.caption_mask), t)
        other = caption_cond(cfgs["t2i"], [45, 113], seed=1)
        c = s(x, other, t)
    assert a.conti.shape == (2, n, s.codebook_dim) and a.logits.shape == (2, n, s.vocab_size)
    torch.testing.assert_close(b.conti, a.conti, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=0)
    assert (c.conti - a.conti).abs().max() > 1e-3  # the valid caption rows do matter


def test_input_errors(student, t2i):
    x, cond, t = inputs(student)
    with pytest.raises(ValueError, match="x must be"):
        student(x[:, :-1], cond, t)
    with pytest.raises(ValueError, match="t must be"):
        student(x, cond, t.float())
    with pytest.raises(ValueError, match=r"t must be in \[0, 64\]"):
        student(x, cond, t + 100)
    with pytest.raises(ValueError, match="labels must be in"):
        student(x, Condition(labels=torch.tensor([0, 1001])), t)
    with pytest.raises(ValueError, match="text-conditional"):
        build_student(t2i)(x, cond, t)
    with pytest.raises(ValueError, match="class-conditional"):
        student(x, Condition(caption=torch.zeros(2, 1, 4), caption_mask=torch.ones(2, 1,
                                                                                  dtype=bool)), t)
    with pytest.raises(ValueError, match="2 conditions for a batch of 1"):
        student(x[:1], cond, t[:1])


def test_bf16_student_tracks_fp32(c2i, student):
    s16 = build_student(c2i, dtype=torch.bfloat16)
    s16.load_state_dict(student.state_dict())
    x, cond, t = inputs(student)
    with torch.no_grad():
        a, b = student(x, cond, t), s16(x, cond, t)
    assert b.conti.dtype == torch.float32 and b.logits.dtype == torch.float32
    assert (b.conti - a.conti).abs().max() < 0.05 * a.conti.abs().max()
    assert (b.logits - a.logits).abs().max() < 0.05 * a.logits.abs().max()


def test_packed_cpu_linears_match_plain(c2i, student):
    plain = build_student(c2i, cpu_packing=False)
    plain.load_state_dict(student.state_dict())
    x, cond, t = inputs(student)
    with torch.no_grad():
        a, b = student(x, cond, t), plain(x, cond, t)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.conti, b.conti, atol=1e-5, rtol=0)


def test_student_trains(c2i):
    s = build_student(c2i).train()
    x, cond, t = inputs(s)
    out = s(x, cond, t)
    loss = out.logits.logsumexp(-1).mean() + out.conti.square().mean()
    loss.backward()
    for name in ("tok_embeddings.weight", "n_d_embed.weight", "final_layer_conti.linear.weight",
                 "final_layer_conti.scale_shift_table", "layers.0.attention.wqkv.weight"):
        grad = s.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.slow
def test_compiled_student_equals_eager(student):
    x, cond, t = inputs(student)
    compiled = torch.compile(student, dynamic=False)
    with torch.no_grad():
        a = student(x, cond, t, logits_range=(5, 20))
        b = compiled(x, cond, t, logits_range=(5, 20))
    torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(b.conti, a.conti, atol=1e-5, rtol=0)


def test_registry_dispatches_on_the_family(c2i, student, tmp_path):
    from ardistill.student import registry

    s = registry.build_student(c2i, generator=torch.Generator().manual_seed(0))
    assert isinstance(s, LlamaGenStudent)
    loaded = registry.load_student(c2i, student.state_dict())
    assert torch.equal(loaded.n_d_embed.weight, student.n_d_embed.weight)
    with pytest.raises(ValueError, match="no DD student for the teacher family 'nope'"):
        registry.build_student(type("T", (), {"family": "nope"})())
