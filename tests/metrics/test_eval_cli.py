"""`ardistill eval` and `evaluate_images` on tiny sample sets against the embedded data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ardistill.cli import main
from ardistill.data.mnist import mnist_images
from ardistill.evaluation.images import (
    ImageReference,
    evaluate_images,
    load_reference,
    prepare_reference,
)
from ardistill.metrics import extract, gaussian_stats
from ardistill.metrics.networks import load_feature_extractor
from ardistill.utils.images import save_npz, save_pngs, to_uint8


@pytest.fixture(scope="module")
def mnist_net():
    return load_feature_extractor("mnist")


@pytest.fixture(scope="module")
def mnist_ref(mnist_net):
    return prepare_reference(load_reference("mnist"), mnist_net)


def _noise(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_eval_cli_on_npz(tmp_path, capsys, mnist_net, mnist_ref):
    held, labels = mnist_images("heldout")
    save_npz(tmp_path / "real.npz", held[::2], labels[::2])  # 250 digits, every class
    assert main(["eval", str(tmp_path / "real.npz"), "--ref", "mnist", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "FID" in printed and "precision" in printed
    real = json.loads((tmp_path / "real.eval.json").read_text())
    assert real["num_samples"] == 250 and real["num_reference"] == 4500
    assert real["features"] == "mnist" and real["fid_reference"] == "images"
    assert real["samples"] == str(tmp_path / "real.npz")
    # the same numbers through the API with a prepared reference
    api = evaluate_images(held[::2], mnist_ref, mnist_net)
    assert api["fid"] == pytest.approx(real["fid"], rel=1e-9)
    assert (api["precision"], api["recall"]) == (real["precision"], real["recall"])
    # held-out digits look like the train split; uniform noise does not
    noise = evaluate_images(_noise(250), mnist_ref, mnist_net)
    assert real["fid"] < 5 and noise["fid"] > 20 * max(real["fid"], 1)
    assert real["precision"] > 0.8 and real["recall"] > 0.5
    assert noise["precision"] < 0.05
    assert real["inception_score"] > 5 and real["is_splits"] == 10


def test_png_dir_and_stats_reference(tmp_path, mnist_net, mnist_ref, capsys):
    held, _ = mnist_images("heldout")
    save_pngs(held[:64], tmp_path / "pngs")
    # an ADM-style reference npz with mu/sigma only (FID only, no precision/recall)
    mu, sigma = mnist_ref.mu, mnist_ref.sigma
    np.savez(tmp_path / "ref_stats.npz", mu=mu, sigma=sigma)
    rc = main(["eval", str(tmp_path / "pngs"), "--ref", str(tmp_path / "ref_stats.npz"),
               "--no-progress"])
    assert rc == 0
    r = json.loads((tmp_path / "pngs" / "eval.json").read_text())
    assert r["fid_reference"] == "stats" and r["precision"] is None
    direct = evaluate_images(held[:64], mnist_ref, mnist_net)
    assert r["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert "statistics only" in capsys.readouterr().out


def test_evaluate_images_float_equals_uint8(mnist_net, mnist_ref):
    held, _ = mnist_images("heldout")
    a = evaluate_images(held[:50], mnist_ref, mnist_net, is_splits=5)
    b = evaluate_images(to_uint8(held[:50]), mnist_ref, mnist_net, is_splits=5)
    assert a == b
    assert a["is_splits"] == 5


def test_reference_stats_of_another_network_are_rejected(mnist_net):
    ref = ImageReference("adm", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="2048-d"):
        prepare_reference(ref, mnist_net)
    feats, _ = extract(mnist_net, mnist_images("heldout")[0][:10])
    assert gaussian_stats(feats)[0].shape == (128,)


def test_eval_cli_errors(tmp_path, capsys):
    save_npz(tmp_path / "s.npz", _noise(8))
    assert main(["eval", str(tmp_path / "s.npz"), "--ref", "mnist", "--features",
                 "inception"]) == 2
    assert "--inception-weights" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "s.npz"), "--ref", "mnist", "--features", "inception",
                 "--inception-weights", str(tmp_path / "no.pth")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.npz"), "--ref", "mnist"]) == 2
    assert "missing.npz" in capsys.readouterr().err
    np.savez(tmp_path / "empty_ref.npz", other=np.zeros(2))
    assert main(["eval", str(tmp_path / "s.npz"), "--ref", str(tmp_path / "empty_ref.npz")]) == 2
    assert "neither images" in capsys.readouterr().err


def test_commands_are_registered():
    from ardistill.cli import build_parser

    text = build_parser().format_help()
    assert "eval" in text and "zoo" in text


def test_class_accuracy_and_fid_spread(tmp_path, capsys, mnist_net, mnist_ref):
    """Real held-out digits with their labels: the classifier reads nearly all of them; with
    every label shifted by one it reads nearly none. The FID spread is the bootstrap std."""
    held, labels = mnist_images("heldout")
    save_npz(tmp_path / "real.npz", held, labels)
    save_npz(tmp_path / "wrong.npz", held, (labels + 1) % 10)
    assert main(["eval", str(tmp_path / "real.npz"), "--ref", "mnist", "--no-progress"]) == 0
    assert main(["eval", str(tmp_path / "wrong.npz"), "--ref", "mnist", "--no-progress"]) == 0
    assert "class acc." in capsys.readouterr().out
    real = json.loads((tmp_path / "real.eval.json").read_text())
    wrong = json.loads((tmp_path / "wrong.eval.json").read_text())
    assert real["class_accuracy"] > 0.95 and wrong["class_accuracy"] < 0.05
    assert real["fid"] == wrong["fid"]  # labels do not enter FID
    assert 0 < real["fid_std"] < real["fid"] and real["fid_resamples"] == 20
    # the spread shrinks with more samples (about 1/sqrt(N)) and is seeded (reproducible)
    small = evaluate_images(held[::2], mnist_ref, mnist_net)
    again = evaluate_images(held[::2], mnist_ref, mnist_net)
    assert small["fid_std"] == again["fid_std"] and small["fid_std"] > real["fid_std"]


def test_class_accuracy_needs_class_labels(mnist_net, tmp_path):
    from ardistill.metrics import class_accuracy

    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert class_accuracy(logits, torch.tensor([0, 1, 2, 1])) == 0.75
    with pytest.raises(ValueError, match="outside"):
        class_accuracy(logits, torch.tensor([0, 1, 2, 3]))
    # samples of a caption-conditioned run: labels are caption rows, not classes
    held, labels = mnist_images("heldout")
    save_npz(tmp_path / "samples.npz", held[:200], labels[:200])
    (tmp_path / "sample.json").write_text(json.dumps(
        {"settings": {"condition": {"kind": "caption", "rows": 3}}}))
    assert main(["eval", str(tmp_path / "samples.npz"), "--ref", "mnist", "--no-progress"]) == 0
    assert json.loads((tmp_path / "samples.eval.json").read_text())["class_accuracy"] is None


def test_one_sample_set_against_another(tmp_path, mnist_net):
    """A student's samples against the teacher's: `--ref` takes another samples file."""
    held, labels = mnist_images("heldout")
    save_npz(tmp_path / "a.npz", held[::2], labels[::2])  # the split is ordered by class:
    save_npz(tmp_path / "b.npz", held[1::2], labels[1::2])  # every other digit, both halves
    assert main(["eval", str(tmp_path / "a.npz"), "--ref", str(tmp_path / "b.npz"),
                 "--no-progress"]) == 0
    r = json.loads((tmp_path / "a.eval.json").read_text())
    assert r["num_reference"] == 250 and r["fid"] < 10 and r["recall"] > 0.5


def test_prompt_accuracy_of_a_prompted_run(tmp_path, capsys):
    """A run conditioned on --prompts records its prompts: `eval` reads the digit each
    sample's prompt names (labels = caption rows) and scores the classifier against it;
    samples whose prompt names no digit are left out."""
    from ardistill.metrics import class_accuracy

    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    assert class_accuracy(logits, torch.tensor([0, -1, 0])) == 0.5
    assert np.isnan(class_accuracy(logits, torch.tensor([-1, -1, -1])))
    held, labels = mnist_images("heldout")
    prompts = [f"a thin {w}" for w in ("zero", "one", "two", "three", "four", "five", "six",
                                       "seven", "eight", "nine")] + ["a cat"]
    rows = labels.clone()
    rows[::5] = 10  # the prompt naming nothing
    save_npz(tmp_path / "samples.npz", held, rows)
    (tmp_path / "sample.json").write_text(json.dumps(
        {"settings": {"condition": {"kind": "caption", "rows": 11, "prompts": prompts}}}))
    assert main(["eval", str(tmp_path / "samples.npz"), "--ref", "mnist", "--no-progress"]) == 0
    assert "prompt acc." in capsys.readouterr().out
    r = json.loads((tmp_path / "samples.eval.json").read_text())
    assert r["prompts_naming_a_digit"] == int((rows != 10).sum())
    assert r["prompt_accuracy"] > 0.95
    # the same images told the wrong digits
    save_npz(tmp_path / "samples.npz", held, (labels + 1) % 10)
    assert main(["eval", str(tmp_path / "samples.npz"), "--ref", "mnist", "--no-progress"]) == 0
    assert json.loads((tmp_path / "samples.eval.json").read_text())["prompt_accuracy"] < 0.05
