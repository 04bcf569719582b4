"""The embedded teachers that ship inside ardistill: they load strictly from package data,
reproduce the outputs recorded when they were made, and are the digits their record says."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from ardistill.cli import main
from ardistill.errors import CheckpointError
from ardistill.teachers.base import Condition, MultinomialChooser, decode
from ardistill.teachers.preset import embedded_checkpoints
from ardistill.teachers.registry import get_preset, load_teacher
from ardistill.utils.checkpoint import read_state_dict
from ardistill.utils.files import sha256_file
from ardistill.zoo.teacher_files import file_names, shipped_record

SHIPPED = ["mnist-llamagen", "mnist-var"]
BUDGET_BYTES = 2_000_000  # at most 2 MB per teacher + tokenizer in fp16 (docs/zoo.md)


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    preset = get_preset(request.param)
    return preset, shipped_record(preset), load_teacher(request.param)


def test_files_are_the_recorded_ones_and_small(shipped):
    preset, record, _ = shipped
    model, tok = embedded_checkpoints(preset, None, None)
    files = {"ar": model, "tokenizer": tok}
    for part, path in files.items():
        assert sha256_file(path) == record[part]["file"]["sha256"], part
        assert read_state_dict(path)  # safetensors, float16 storage
    assert sum(p.stat().st_size for p in files.values()) < BUDGET_BYTES
    assert record["preset"] == preset.name and record["seed"] == 0 and record["limit"] is None
    assert record["ar"]["command"].startswith(f"ardistill teacher train {preset.name}")


def test_weights_reproduce_the_recorded_outputs(shipped):
    preset, record, teacher = shipped
    ref = record["teacher"]["reference"]
    assert teacher.fingerprint() == record["teacher"]["fingerprint"]
    # no near ties: a probability gap far above float32 noise (~1e-7) keeps greedy robust
    assert ref["min_top2_margin"] > 1e-5
    cond = Condition(labels=torch.tensor(ref["labels"]))
    tokens = decode(teacher, cond, teacher.default_sampling, lambda s, p: p.argmax(-1))
    assert tokens.tolist() == ref["greedy_tokens"]
    images = teacher.decode_tokens(tokens)
    assert images.double().sum(dim=(1, 2, 3)).tolist() == pytest.approx(ref["image_sums"],
                                                                       rel=1e-4, abs=1e-2)
    mid = teacher.image_size // 2
    assert torch.allclose(images[:, 0, mid], torch.tensor(ref["image_row_mid"]), atol=1e-4)


def test_preset_describes_the_teacher(shipped):
    preset, record, teacher = shipped
    assert preset.embedded and preset.extra["features"] == "mnist"
    assert teacher.num_classes == 10 and teacher.image_size == 32
    assert teacher.default_sampling == preset.sampling
    assert asdict(preset.sampling) == record["teacher"]["sampling"]
    assert 0 < preset.dd.t2 < teacher.layout.num_steps
    assert 0 < preset.dd.split <= teacher.layout.num_steps
    assert teacher.dd_codebook().shape == (teacher.vocab_size, teacher.codebook_dim)


def test_recorded_quality_is_good(shipped):
    _, record, _ = shipped
    q = record["teacher"]["quality"]
    assert q["n"] >= 1000 and q["accuracy"] >= 0.9
    assert q["copies_of_train_tokens"] < 0.05
    assert record["tokenizer"]["quality"]["heldout_psnr_db"] >= 22.0


def test_samples_are_the_requested_digits(shipped):
    # 100 fresh samples (not the recorded ones): the feature network recognises the class
    from ardistill.metrics.networks import load_feature_extractor

    _, _, teacher = shipped
    labels = torch.arange(100) % 10
    g = torch.Generator().manual_seed(1234)
    tokens = decode(teacher, Condition(labels=labels), teacher.default_sampling,
                    MultinomialChooser(g))
    logits = load_feature_extractor("mnist").logits(teacher.decode_tokens(tokens))
    assert (logits.argmax(1) == labels).double().mean() >= 0.85


def test_loading_is_strict(shipped, tmp_path):
    preset, _, _ = shipped
    from safetensors.torch import save_file

    model, tok = embedded_checkpoints(preset, None, None)
    sd = read_state_dict(model)
    key = sorted(sd)[-1]
    save_file({k: v for k, v in sd.items() if k != key}, str(tmp_path / "cut.safetensors"))
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_teacher(preset.name, model_ckpt=tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError):
        load_teacher(preset.name, model_ckpt=tok, tokenizer_ckpt=model)


def test_missing_shipped_file_is_a_clear_error():
    from dataclasses import replace

    preset = get_preset(SHIPPED[0])
    broken = replace(preset, extra={**preset.extra, "model_file": "absent.safetensors"})
    with pytest.raises(CheckpointError, match="absent.safetensors.*missing"):
        embedded_checkpoints(broken, None, None)


def test_eval_cli_prints_quality(tmp_path, capsys):
    out = tmp_path / "q.json"
    rc = main(["teacher", "eval", SHIPPED[0], "--samples", "20", "--json", str(out),
               "--grid", str(tmp_path / "grid.png"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "FID" in text and "accuracy" in text
    rec = json.loads(out.read_text())
    assert rec["quality"]["n"] == 20 and (tmp_path / "grid.png").is_file()
    assert main(["teacher", "eval", "llamagen-b"]) == 2  # not embedded: CLI error


def test_file_names_need_an_embedded_preset():
    with pytest.raises(ValueError, match="not an embedded teacher"):
        file_names(get_preset("llamagen-b"))
