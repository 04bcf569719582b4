"""`ardistill bench student`: the timing harness on a tiny real student, and the CLI."""

from __future__ import annotations

import json

import torch

from ardistill.bench.student import official_size, time_student
from ardistill.cli import main
from ardistill.student.llamagen import build_student
from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import random_gpt, random_vq
from ardistill.teachers.llamagen.presets import PRESETS
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher


def test_time_student_on_a_tiny_student(oracle):
    c = json.loads((oracle / "llamagen" / "config.json").read_text())
    gen = torch.Generator().manual_seed(0)
    gpt = random_gpt(GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"]),
                     generator=gen)
    vq = random_vq(VQConfig.from_official(c["vq"]["model_args"],
                                          c["vq"]["encoder_decoder_override"]), generator=gen)
    teacher = LlamaGenTeacher("tiny", gpt, vq, SamplingConfig(cfg_scale=2.0))
    student = build_student(teacher)
    res = time_student(student, teacher, [0, 20], 20, batch=3, repeats=2)
    assert res["batch"] == 3 and res["steps"] == 2 and len(res["runs"]) == 2
    assert 0 < res["s_per_image"] < 60


def test_cli_skips_unknown_presets_and_checks_arguments(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    rc = main(["bench", "student", "--presets", "no-such-teacher", "--quick",
               "--json", str(out_json)])
    assert rc == 0
    assert "no-such-teacher: no such preset in this build, skipped" in capsys.readouterr().out
    assert json.loads(out_json.read_text()) == []
    rc = main(["bench", "student", "--presets", "x", "--official-dd", str(tmp_path)])
    assert rc == 2
    assert "not the LlamaGen folder of a distilled_decoding checkout" in capsys.readouterr().err
    rc = main(["bench", "student", "--presets", "x", "--steps", "3"])
    assert rc == 2
    assert "--steps takes 1 and/or 2" in capsys.readouterr().err
    rc = main(["bench", "student", "--presets", "x", "--batch", "0"])
    assert rc == 2
    assert "--batch and --repeats must be >= 1" in capsys.readouterr().err


def test_official_sizes_of_presets():
    assert official_size(PRESETS["llamagen-b"]) == "GPT-B"
    assert official_size(PRESETS["llamagen-l"]) == "GPT-L"
    assert official_size(PRESETS["llamagen-xl-t2i"]) is None  # dd.py has no t2i student


def test_cli_int8_rows_follow_each_fp32_row(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    rc = main(["bench", "student", "--presets", "mnist-llamagen,mnist-var", "--steps", "1",
               "--quick", "--dtype", "fp32", "--int8", "--json", str(out_json)])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("int8 speed-up over fp32:") == 4  # 2 presets x batches 1 and 2
    rows = json.loads(out_json.read_text())
    assert [r["impl"] for r in rows] == ["ardistill", "ardistill-int8"] * 4
    assert all(r["s_per_image"] > 0 for r in rows)
    # bf16: the bf16 rows run, the int8 ones are skipped with the reason
    rc = main(["bench", "student", "--presets", "mnist-llamagen", "--steps", "1", "--quick",
               "--dtype", "bf16", "--int8"])
    assert rc == 0
    assert "int8: --int8 needs a float32 student on the CPU" in capsys.readouterr().out
