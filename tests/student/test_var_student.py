"""The VAR DD student on tiny real teachers: init from the teacher, the attention layout, the
noise/data embedding, the logits-range restriction, dtypes, strict loading and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ardistill.errors import CheckpointError
from ardistill.student import registry
from ardistill.student.base import Student
from ardistill.student.var import VARStudent, build_student, load_student, unwrap_dd_checkpoint
from ardistill.teachers.base import Condition
from ardistill.teachers.var.tiny import tiny_teacher


@pytest.fixture(scope="module")
def teacher():
    return tiny_teacher(0).eval()


@pytest.fixture(scope="module")
def student(teacher) -> VARStudent:
    s = build_student(teacher, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # informative new weights: the official init makes them small
        s.n_d_embed.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(4))
    return s


def _inputs(teacher, B: int = 3, seed: int = 0) -> tuple[Tensor, Condition]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, teacher.layout.num_positions, teacher.codebook_dim, generator=g)
    return x, Condition(labels=torch.randint(0, teacher.num_classes, (B,), generator=g))


def _t(B: int, t: int) -> Tensor:
    return torch.full((B,), t, dtype=torch.long)


# ---- init from the teacher (build.py docstring) ----
def test_copied_weights_equal_the_teachers(teacher, student):
    tm = teacher.model
    for name in ("word_embed", "class_emb", "head_nm", "head", "blocks"):
        ours, theirs = getattr(student, name).state_dict(), getattr(tm, name).state_dict()
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), f"{name}.{k}"
    assert torch.equal(student.pos_start, tm.pos_start)
    assert torch.equal(student.class_emb.weight[1], tm.class_emb.weight[1])  # no official slip
    lvl, pos, t_lvl = student.lvl_embed.weight, student.pos_1LC, tm.lvl_embed.weight
    assert torch.equal(lvl[0], t_lvl[0]) and torch.equal(lvl[2:], t_lvl[1:])
    assert torch.equal(pos[:, 0], tm.pos_1LC[:, 0]) and torch.equal(pos[:, 2:], tm.pos_1LC[:, 1:])


def test_new_weights_have_the_documented_init(teacher):
    s = build_student(teacher, generator=torch.Generator().manual_seed(0))
    C = s.config.var.width
    auto = (1 / (3 * C)) ** 0.5
    lw = torch.cat([m.weight.flatten() for m in s.layerwise_n_d_embed])
    assert abs(lw.std().item() / auto - 1) < 0.05 and lw.abs().max() < 2
    assert all(not m.bias.any() for m in s.layerwise_n_d_embed)
    fl = s.final_layer_conti.linear
    assert abs(fl.weight.std().item() / auto - 1) < 0.15 and not fl.bias.any()
    table = s.final_layer_conti.scale_shift_table
    assert abs(table.std().item() * C**0.5 - 1) < 0.25
    small = torch.cat([s.n_d_embed.weight.flatten(), s.pos_1LC[0, 1], s.lvl_embed.weight[1]])
    assert abs(small.std().item() / 0.02 - 1) < 0.2  # init_std 0.02; the teacher's rows: 0.15
    s2 = build_student(teacher, generator=torch.Generator().manual_seed(0), init_std=0.1)
    assert abs(s2.n_d_embed.weight.std().item() / 0.1 - 1) < 0.3
    lvl, bias = s.lvl_1L, s.attn_bias_for_masking
    assert lvl.tolist()[0][:6] == [0, 1, 2, 2, 2, 2] and bias.shape[-1] == s.config.seq_len


def test_init_is_a_function_of_the_generator(teacher):
    a = build_student(teacher, generator=torch.Generator().manual_seed(0)).state_dict()
    b = build_student(teacher, generator=torch.Generator().manual_seed(0)).state_dict()
    c = build_student(teacher, generator=torch.Generator().manual_seed(1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["n_d_embed.weight"], c["n_d_embed.weight"])
    assert torch.equal(a["head.weight"], c["head.weight"])


def test_build_rejects_other_teachers():
    class NotVAR:
        family = "llamagen"
        name = "x"
    with pytest.raises(ValueError, match="not a VAR teacher"):
        build_student(NotVAR())


def test_registry_dispatches_to_var(teacher):
    s = registry.build_student(teacher, generator=torch.Generator().manual_seed(0))
    assert isinstance(s, VARStudent) and isinstance(s, Student)
    loaded = registry.load_student(teacher, s.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(s.state_dict().values(),
                                                 loaded.state_dict().values()))


# ---- the forward ----
def test_outputs_shapes_and_protocol(teacher, student):
    x, cond = _inputs(teacher)
    with torch.no_grad():
        out = student(x, cond, _t(3, 0))
    L, V, d = teacher.layout.num_positions, teacher.vocab_size, teacher.codebook_dim
    assert out.conti.shape == (3, L, d) and out.logits.shape == (3, L, V)
    assert out.conti.dtype == out.logits.dtype == torch.float32


def test_a_token_sees_earlier_scales_and_itself_only(teacher, student):
    """DD attention (README §5.2): changing x_j changes row j and rows of later scales,
    never rows of earlier scales or the other rows of j's scale."""
    layout = teacher.layout
    x, cond = _inputs(teacher)
    s = 2
    j = layout.begin(s) + 1
    x2 = x.clone()
    x2[:, j] += 1.0
    with torch.no_grad():
        a, b = student(x, cond, _t(3, 0)), student(x2, cond, _t(3, 0))
    for out_a, out_b in ((a.conti, b.conti), (a.logits, b.logits)):
        same = (out_a - out_b).abs().amax(dim=(0, 2)) == 0  # per position
        sl = layout.step_slice(s)
        assert same[: sl.start].all(), "an earlier scale saw a later one"
        others = [i for i in range(sl.start, sl.stop) if i != j]
        assert same[others].all(), "a token saw another token of its own scale"
        assert not same[j], "a token does not see itself"
        assert not same[sl.stop :].any(), "a later scale does not see an earlier one"


def test_noise_data_embedding_follows_t(teacher, student):
    layout = teacher.layout
    nd = student.noise_data_index(torch.tensor([0, 2, layout.num_steps]))
    assert nd[:, 0].tolist() == [1, 1, 1]  # sos is always data
    assert nd[0, 1:].sum() == 0 and nd[1, 1:].sum() == layout.begin(2) and nd[2, 1:].all()
    x, cond = _inputs(teacher)
    with torch.no_grad():
        a, b, c = (student(x, cond, _t(3, t)) for t in (0, 1, 2))
    # the embedding enters at the input and in every block: every row depends on t ...
    assert ((a.conti - c.conti).abs().amax(dim=(0, 2)) > 0).all()
    # ... through its own label and those of the rows it sees: scale 0 (sos and itself) is
    # data at t = 1 and t = 2 alike, later scales see scale 1, whose label differs
    diff = (b.conti - c.conti).abs().amax(dim=(0, 2))
    assert diff[0] == 0 and (diff[1:] > 0).all()


def test_logits_range_equals_the_full_forward(teacher, student):
    x, cond = _inputs(teacher)
    with torch.no_grad():
        full = student(x, cond, _t(3, 1))
        for lo, hi in ((0, 5), (1, 14), (5, 30), (7, 7)):
            part = student(x, cond, _t(3, 1), logits_range=(lo, hi))
            assert part.logits.shape == (3, hi - lo, teacher.vocab_size)
            torch.testing.assert_close(part.logits, full.logits[:, lo:hi], atol=1e-5, rtol=0)
            torch.testing.assert_close(part.conti, full.conti, atol=0, rtol=0)


@pytest.mark.parametrize("bad", [(-1, 3), (4, 2), (0, 31)])
def test_bad_logits_range(teacher, student, bad):
    x, cond = _inputs(teacher)
    with pytest.raises(ValueError, match="logits_range"):
        student(x, cond, _t(3, 0), logits_range=bad)


def test_bad_inputs_raise(teacher, student):
    x, cond = _inputs(teacher)
    with pytest.raises(ValueError, match="x must be"):
        student(x[:, :-1], cond, _t(3, 0))
    with pytest.raises(ValueError, match="integer DD timesteps"):
        student(x, cond, torch.zeros(3))
    with pytest.raises(ValueError, match=r"t must be in \[0, 4\]"):
        student(x, cond, _t(3, 5))
    with pytest.raises(ValueError, match="2 conditions for a batch of 3"):
        student(x, cond[:2], _t(3, 0))
    with pytest.raises(ValueError, match="labels must be in"):
        student(x, Condition(labels=torch.tensor([0, 1, 11])), _t(3, 0))
    cap = Condition(caption=torch.zeros(3, 4, 2), caption_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="class-conditional"):
        student(x, cap, _t(3, 0))


def test_bf16_student_is_close_to_fp32(teacher, student):
    s16 = build_student(teacher, generator=torch.Generator().manual_seed(3), dtype=torch.bfloat16)
    s16.load_state_dict(student.state_dict())
    x, cond = _inputs(teacher)
    with torch.no_grad():
        a, b = student(x, cond, _t(3, 1)), s16(x, cond, _t(3, 1))
    assert b.conti.dtype == b.logits.dtype == torch.float32
    for p, q in ((a.conti, b.conti), (a.logits, b.logits)):
        assert (p - q).abs().max() < 0.1 * p.abs().max()


@pytest.mark.slow
def test_compiled_student_equals_eager(teacher, student):
    s = build_student(teacher, generator=torch.Generator().manual_seed(3), compile=True)
    s.load_state_dict(student.state_dict())
    x, cond = _inputs(teacher)
    with torch.no_grad():
        for t, rng in ((0, (0, 14)), (2, (5, 30))):
            a = student(x, cond, _t(3, t), logits_range=rng)
            b = s(x, cond, _t(3, t), logits_range=rng)
            torch.testing.assert_close(b.conti, a.conti, atol=1e-4, rtol=0)
            torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=0)


# ---- strict loading (build.py) ----
def _same_outputs(a: VARStudent, b: VARStudent, teacher) -> bool:
    x, cond = _inputs(teacher)
    with torch.no_grad():
        oa, ob = a(x, cond, _t(3, 1)), b(x, cond, _t(3, 1))
    return torch.equal(oa.conti, ob.conti) and torch.equal(oa.logits, ob.logits)


def test_load_round_trip_and_trainer_files(teacher, student, tmp_path):
    sd = student.state_dict()
    assert _same_outputs(load_student(teacher, sd), student, teacher)
    # official release: {"trainer": {"ema_parameters": ..., "var_wo_ddp": ...}}; an EMA dict
    # of parameters may lack the constant buffers
    params = dict(student.named_parameters())
    other = build_student(teacher, generator=torch.Generator().manual_seed(9))
    trainer = {"trainer": {"ema_parameters": {k: v.detach() for k, v in params.items()},
                           "var_wo_ddp": other.state_dict(), "config": {"ep": 1}}}
    path = tmp_path / "var-dd.pth"
    torch.save(trainer, path)
    assert _same_outputs(load_student(teacher, path), student, teacher)
    assert _same_outputs(load_student(teacher, path, weights="raw"), other, teacher)
    bf = load_student(teacher, path, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16 and bf.lvl_1L.dtype == torch.int64


def _sd(student) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in student.state_dict().items()}


def test_missing_unexpected_and_misshaped_keys_fail(teacher, student):
    sd = _sd(student)
    del sd["layerwise_n_d_embed.1.weight"]
    with pytest.raises(CheckpointError, match="layerwise_n_d_embed.1.weight"):
        load_student(teacher, sd)
    sd = _sd(student)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_student(teacher, sd)
    sd = _sd(student)
    sd["final_layer_conti.linear.weight"] = torch.zeros(9, 64)
    with pytest.raises(CheckpointError, match=r"final_layer_conti.linear.weight.*\(9, 64\)"):
        load_student(teacher, sd)


def test_wrong_models_fail_with_a_clear_message(teacher, student):
    with pytest.raises(CheckpointError, match="VAR teacher transformer of depth 2, not a DD"):
        load_student(teacher, teacher.model.state_dict())
    with pytest.raises(CheckpointError, match="LlamaGen"):
        load_student(teacher, {"tok_embeddings.weight": torch.zeros(2, 2)})
    deeper = build_student(tiny_teacher(0, depth=3), generator=torch.Generator().manual_seed(0))
    with pytest.raises(CheckpointError, match="depth 3, but a VAR DD student of depth 2"):
        load_student(teacher, deeper.state_dict())
    sd = _sd(student)
    sd["attn_bias_for_masking"] = torch.zeros_like(sd["attn_bias_for_masking"])
    with pytest.raises(CheckpointError, match="attn_bias_for_masking"):
        load_student(teacher, sd)


def test_trainer_file_errors(teacher, student):
    with pytest.raises(CheckpointError, match="no 'ema_parameters'"):
        load_student(teacher, {"trainer": {"var_wo_ddp": student.state_dict()}})
    with pytest.raises(ValueError, match="weights must be one of"):
        unwrap_dd_checkpoint({"trainer": {}}, weights="best")
    with pytest.raises(CheckpointError, match="not found"):
        load_student(teacher, "/nonexistent/var-d16.pth")


def test_mixed_timesteps_equal_per_sample_runs(teacher, student):
    """A batch of different t (the gathered n/d path) equals uniform batches (the in-place
    slice path) row by row."""
    x, cond = _inputs(teacher)
    with torch.no_grad():
        mixed = student(x, cond, torch.tensor([1, 3, 1]))
        ones, threes = student(x, cond, _t(3, 1)), student(x, cond, _t(3, 3))
    torch.testing.assert_close(mixed.conti[[0, 2]], ones.conti[[0, 2]], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed.conti[1], threes.conti[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed.logits[1], threes.logits[1], atol=1e-5, rtol=0)


def test_nd_tables_follow_weight_updates(teacher):
    s = build_student(teacher, generator=torch.Generator().manual_seed(0))
    x, cond = _inputs(teacher)
    with torch.no_grad():
        a = s(x, cond, _t(3, 1)).conti
        s.layerwise_n_d_embed[0].bias.add_(1.0)  # in place: the cached tables must follow
        b = s(x, cond, _t(3, 1)).conti
    assert not torch.equal(a, b)
    # with autograd the tables are recomputed and gradients reach every n/d weight
    s(x, cond, _t(3, 1)).conti.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in (s.n_d_embed.weight, *s.layerwise_n_d_embed.parameters()))
