"""int8 CPU inference of the linear layers (`teachers.fast_linear.set_cpu_int8`,
`teachers.int8`, `ardistill sample --int8`, `ardistill bench student|teacher --int8`): students
close to float32, the float path untouched where it must be, clear errors elsewhere."""

from __future__ import annotations

import json

import pytest
import torch
from tests.student.test_llamagen_student import (  # noqa: F401 (fixtures)
    c2i,
    cfgs,
    inputs,
    make_teacher,
    randomise_new_weights,
    student,
)

import ardistill.teachers.fast_linear as fl
from ardistill.errors import UserError
from ardistill.student.llamagen import build_student
from ardistill.teachers.fast_linear import FastLinear, int8_weight, set_cpu_int8
from ardistill.teachers.int8 import use_int8


def test_int8_linear_is_close_to_float_and_follows_its_weight():
    g = torch.Generator().manual_seed(0)
    lin = FastLinear(64, 48, bias=True).eval()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 64, generator=g) * 0.1)
        lin.bias.copy_(torch.randn(48, generator=g))
    x = torch.randn(5, 7, 64, generator=g)
    with torch.no_grad():
        ref = lin(x)
        assert set_cpu_int8(lin, True) and lin.cpu_int8
        got = lin(x)
        assert got.shape == ref.shape and got.dtype == torch.float32
        err = (got - ref).abs().max() / ref.abs().max()
        assert 0 < err < 0.03  # quantized: close, not equal
        # the weight's int8 copy: per output channel, max |w| -> 127
        q = int8_weight(lin.weight)
        assert torch.equal(q.int_repr().abs().amax(1), torch.full((48,), 127, dtype=torch.int8))
        half_step = q.q_per_channel_scales().max() / 2
        assert (q.dequantize() - lin.weight).abs().max() <= half_step + 1e-7
        lin.weight.mul_(-2.0)  # a changed weight: the int8 copy is redone
        torch.testing.assert_close(lin(x), (got - lin.bias) * -2.0 + lin.bias,
                                   atol=0.05 * ref.abs().max(), rtol=0)
        before = lin(x)
        lin.bias.add_(1.0)  # a changed bias too (it is packed with the weight)
        torch.testing.assert_close(lin(x), before + 1.0, atol=1e-5, rtol=0)
        lin.bias.sub_(1.0)
    # gradients, training or another dtype: the float path
    torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))
    with torch.no_grad():
        assert torch.equal(lin.double()(x.double()), torch.nn.functional.linear(
            x.double(), lin.weight, lin.bias))
    lin.float()
    assert not set_cpu_int8(lin, False) and lin._int8 is None
    with torch.no_grad():
        torch.testing.assert_close(lin(x), -2.0 * ref + 3.0 * lin.bias, atol=1e-5, rtol=1e-5)


def test_int8_student_tracks_fp32(c2i, student):  # noqa: F811
    s8 = build_student(c2i)
    s8.load_state_dict(student.state_dict())
    use_int8(s8)
    x, cond, t = inputs(student)
    with torch.no_grad():
        a, b = student(x, cond, t), s8(x, cond, t)
    assert b.conti.dtype == torch.float32
    assert (b.conti - a.conti).abs().max() < 0.05 * a.conti.abs().max()
    assert (b.logits - a.logits).abs().max() < 0.05 * a.logits.abs().max()
    assert not torch.equal(a.logits, b.logits)  # it did run in int8
    assert set(s8.state_dict()) == set(student.state_dict())  # keys unchanged


def test_int8_var_student_tracks_fp32():
    from ardistill.student.var import build_student as build_var
    from ardistill.teachers.base import Condition
    from ardistill.teachers.var.tiny import tiny_teacher

    teacher = tiny_teacher(0).eval()
    s32 = build_var(teacher, generator=torch.Generator().manual_seed(3))
    s8 = build_var(teacher, generator=torch.Generator().manual_seed(3))
    use_int8(s8)
    assert s8.blocks[0].attn.mat_qkv.cpu_int8 and s8.head.cpu_int8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, teacher.layout.num_positions, teacher.codebook_dim, generator=g)
    cond = Condition(labels=torch.randint(0, teacher.num_classes, (3,), generator=g))
    t = torch.full((3,), 1, dtype=torch.long)
    with torch.no_grad():
        a, b = s32(x, cond, t), s8(x, cond, t)
    for p, q in ((a.conti, b.conti), (a.logits, b.logits)):
        assert 0 < (p - q).abs().max() < 0.05 * p.abs().max()
    s8.set_compile(True)
    with pytest.raises(UserError, match="--compile"):
        use_int8(s8)


def test_use_int8_refuses_what_it_cannot_run(c2i, monkeypatch):  # noqa: F811
    with pytest.raises(UserError, match="float32 student on the CPU"):
        use_int8(build_student(c2i, dtype=torch.bfloat16))
    with pytest.raises(UserError, match="--compile"):
        use_int8(build_student(c2i), compiled=True)

    class Other(torch.nn.Module):
        family = "maskgit"
    with pytest.raises(UserError, match="LlamaGen and VAR"):
        use_int8(Other())
    monkeypatch.setattr(fl, "_int8_supported", lambda: False)
    with pytest.raises(UserError, match="quantized linear ops"):
        use_int8(build_student(c2i))


def test_sample_int8_cli_records_it(tmp_path):
    from ardistill.cli import main

    out = tmp_path / "s"
    assert main(["sample", "--teacher", "mnist-llamagen", "--steps", "1", "--num", "4",
                 "--batch-size", "4", "--no-pngs", "--int8", "--out", str(out)]) == 0
    meta = json.loads((out / "sample.json").read_text())
    assert meta["settings"]["models"]["int8"] is True
    assert main(["sample", "--teacher", "mnist-var", "--steps", "1", "--num", "2",
                 "--batch-size", "2", "--no-pngs", "--int8", "--out", str(tmp_path / "v")]) == 0
    # a bf16 student: a clear error, nothing written
    bad = tmp_path / "bad"
    assert main(["sample", "--teacher", "mnist-llamagen", "--dtype", "bf16", "--steps", "1",
                 "--num", "2", "--batch-size", "2", "--no-pngs", "--int8",
                 "--out", str(bad)]) != 0
    assert not (bad / "samples.npz").exists()


def test_int8_teachers_track_fp32(cfgs):  # noqa: F811
    from ardistill.teachers.base import Condition
    from ardistill.teachers.int8 import stop_int8, teacher_network, use_int8_teacher
    from ardistill.teachers.var.tiny import tiny_teacher

    lg = make_teacher(cfgs, "c2i")
    tokens = torch.randint(0, lg.vocab_size, (2, lg.layout.num_positions),
                           generator=torch.Generator().manual_seed(0))
    cond = Condition(labels=torch.tensor([4, 9]))
    ref = lg.forward_logits(tokens, cond)
    use_int8_teacher(lg)
    assert teacher_network(lg) is lg.gpt and lg.gpt.output.cpu_int8
    got = lg.forward_logits(tokens, cond)
    assert 0 < (got - ref).abs().max() < 0.05 * ref.abs().max()
    stop_int8(lg)
    torch.testing.assert_close(lg.forward_logits(tokens, cond), ref, atol=1e-4, rtol=0)
    var = tiny_teacher(0).eval()
    use_int8_teacher(var)
    assert var.model.blocks[0].attn.mat_qkv.cpu_int8
    stop_int8(var)
    assert not var.model.blocks[0].attn.mat_qkv.cpu_int8
    var.set_compile(True)
    with pytest.raises(UserError, match="--compile"):
        use_int8_teacher(var)

    class Other:
        family = "maskgit"
    with pytest.raises(UserError, match="LlamaGen and VAR teachers"):
        use_int8_teacher(Other())


def test_bench_teacher_int8_rows(capsys):
    from ardistill.cli import main

    rc = main(["bench", "teacher", "--presets", "mnist-llamagen", "--quick", "--dtype", "fp32",
               "--int8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("ardistill mnist-llamagen int8") == 2 and "int8 speed-up:" in out
