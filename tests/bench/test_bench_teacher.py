"""`ardistill bench teacher`: the timing harness on a tiny real teacher, and the CLI."""

from __future__ import annotations

import json

import torch

from ardistill.bench.teacher import time_teacher
from ardistill.cli import main
from ardistill.teachers.base import SamplingConfig
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.loading import random_gpt, random_vq
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher


def test_time_teacher_on_a_tiny_teacher(oracle):
    c = json.loads((oracle / "llamagen" / "config.json").read_text())
    gen = torch.Generator().manual_seed(0)
    gpt = random_gpt(GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"]),
                     generator=gen)
    vq = random_vq(VQConfig.from_official(c["vq"]["model_args"],
                                          c["vq"]["encoder_decoder_override"]), generator=gen)
    teacher = LlamaGenTeacher("tiny", gpt, vq, SamplingConfig(cfg_scale=2.0, top_k=100))
    res = time_teacher(teacher, batch=3, repeats=2)
    assert res["batch"] == 3 and len(res["runs"]) == 2
    assert 0 < res["s_per_image"] < 60 and res["decode_s_per_image"] > 0


def test_cli_skips_unknown_presets_and_checks_official_dir(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    rc = main(["bench", "teacher", "--presets", "no-such-teacher", "--quick",
               "--json", str(out_json)])
    assert rc == 0
    assert "no-such-teacher: no such preset in this build, skipped" in capsys.readouterr().out
    assert json.loads(out_json.read_text()) == []
    rc = main(["bench", "teacher", "--presets", "x", "--official-llamagen", str(tmp_path)])
    assert rc == 2
    assert "not a LlamaGen checkout" in capsys.readouterr().err
