"""Prompts in: `ardistill encode-captions` writes the file `--captions` reads, and `--prompts
FILE --encoder ...` of sample and gen-pairs encode in memory with the same result and the same
recorded identity (tiny T5 with d_model = tiny_t2i's caption width; tiny real teacher)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from ardistill.cli import main
from ardistill.core.captions import captions_from_prompts, load_captions
from ardistill.core.pairs_dataset import PairsDataset
from ardistill.text import EncoderSpec, encode_prompts
from ardistill.utils.files import sha256_file

T2I = "tiny_teachers:tiny_t2i"
PROMPTS = "a photo of a cat\n\n  a blue car parked in front of a wall\nthe quick brown fox\n\n"


@pytest.fixture()
def prompts(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text(PROMPTS, encoding="utf-8")
    return p


def _enc(tiny_t5, *more):
    return ["--encoder", f"t5:{tiny_t5}", "--max-length", "6", *more]


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_encode_captions_round_trip(tmp_path, tiny_t5, prompts, suffix, capsys):
    out = tmp_path / f"caps{suffix}"
    assert main(["encode-captions", "--prompts", str(prompts), *_enc(tiny_t5), "--out",
                 str(out)]) == 0
    assert "3 prompts" in capsys.readouterr().out
    caps = load_captions(out)
    lines = ["a photo of a cat", "a blue car parked in front of a wall", "the quick brown fox"]
    cap, mask = encode_prompts(lines, EncoderSpec.parse(f"t5:{tiny_t5}", max_length=6))
    assert caps.caption.dtype == np.float32 and caps.caption.shape == (3, 6, 12)
    assert np.array_equal(caps.caption, cap) and np.array_equal(caps.mask, mask)
    assert not list(tmp_path.glob(".*tmp-*"))  # atomic: no temporary left
    mem = captions_from_prompts(prompts, EncoderSpec.parse(f"t5:{tiny_t5}", max_length=6))
    if suffix == ".safetensors":
        # the in-memory identity is the checksum of this very file
        assert mem.source_sha256 == caps.source_sha256 == sha256_file(out)
        assert mem.identity() == caps.identity()
        with safe_open(str(out), "np") as f:
            raw = f.metadata()
        meta = json.loads(raw["text_encoder"])
        assert meta["encoder"] == "t5" and meta["max_length"] == 6
        assert meta["encoder_dtype"] == "bf16" and meta["prompts"] == 3
        assert str(tiny_t5) not in json.dumps(raw)  # no local paths recorded
        # the bytes are reproducible: writing again gives the same checksum
        assert main(["encode-captions", "--prompts", str(prompts), *_enc(tiny_t5), "--out",
                     str(tmp_path / "again.safetensors")]) == 0
        assert sha256_file(tmp_path / "again.safetensors") == sha256_file(out)


def test_sample_prompts_equals_captions_file(tmp_path, tiny_t5, prompts):
    caps = tmp_path / "caps.safetensors"
    assert main(["encode-captions", "--prompts", str(prompts), *_enc(tiny_t5), "--out",
                 str(caps)]) == 0

    def run(out, *argv):
        return main(["sample", "--teacher", T2I, "--method", "teacher", "--teacher-choice",
                     "greedy", "--num", "4", "--batch-size", "2", "--no-pngs", "--out",
                     str(tmp_path / out), *argv])

    assert run("file", "--captions", str(caps)) == 0
    assert run("prompts", "--prompts", str(prompts), *_enc(tiny_t5)) == 0
    for name in ("samples.npz", "tokens.npz"):
        with np.load(tmp_path / "file" / name) as a, np.load(tmp_path / "prompts" / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                assert np.array_equal(a[k], b[k]), (name, k)
    with np.load(tmp_path / "file" / "samples.npz") as f:
        assert f["arr_0"].shape == (4, 8, 8, 3) and f["arr_1"].tolist() == [0, 1, 2, 0]
    meta = [json.loads((tmp_path / d / "sample.json").read_text())["settings"]
            for d in ("file", "prompts")]
    # same caption identity; the prompted run also records its texts (for prompt accuracy)
    texts = meta[1]["condition"].pop("prompts")
    assert texts == [line.strip() for line in prompts.read_text().splitlines() if line.strip()]
    assert "prompts" not in meta[0]["condition"]
    assert meta[0]["condition"] == meta[1]["condition"]
    assert meta[1]["condition"]["source_sha256"] == sha256_file(caps)
    assert meta[1]["encoder"]["kind"] == "t5" and meta[1]["prompts"] == str(prompts)


def test_gen_pairs_prompts_records_the_caption_identity(tmp_path, tiny_t5, prompts):
    caps = tmp_path / "caps.safetensors"
    assert main(["encode-captions", "--prompts", str(prompts), *_enc(tiny_t5), "--out",
                 str(caps)]) == 0
    out = tmp_path / "pairs"
    assert main(["gen-pairs", "--teacher", T2I, "--num", "8", "--micro-batch", "4",
                 "--shard-size", "8", "--batch-size", "8", "--out", str(out), "--no-progress",
                 "--prompts", str(prompts), *_enc(tiny_t5)]) == 0
    ds = PairsDataset(out)
    assert ds.identity["condition"] == load_captions(caps).identity()
    stored = load_captions(out / "captions.safetensors")
    assert np.array_equal(stored.caption, load_captions(caps).caption)
    # resuming with the file instead of the prompts is the same dataset
    assert main(["gen-pairs", "--teacher", T2I, "--num", "8", "--micro-batch", "4",
                 "--shard-size", "8", "--batch-size", "8", "--out", str(out), "--no-progress",
                 "--captions", str(caps)]) == 0
    assert main(["verify-pairs", str(out), "--no-progress"]) == 0


def test_bad_prompt_inputs(tmp_path, tiny_t5, prompts, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    caps = tmp_path / "c.npz"
    enc = ["--encoder", f"t5:{tiny_t5}", "--max-length", "6"]
    sample = ["sample", "--teacher", T2I, "--method", "teacher", "--num", "2",
              "--out", str(tmp_path / "s")]
    pairs = ["gen-pairs", "--teacher", T2I, "--num", "4", "--micro-batch", "4",
             "--out", str(tmp_path / "p"), "--no-progress"]
    cases = [
        (["encode-captions", "--prompts", str(tmp_path / "missing.txt"), *enc, "--out",
          str(caps)], "prompts file not found"),
        (["encode-captions", "--prompts", str(empty), *enc, "--out", str(caps)],
         "prompts file is empty"),
        (["encode-captions", "--prompts", str(prompts), "--encoder",
          f"t5:{tmp_path / 'no-model'}", "--out", str(caps)], "T5 model folder not found"),
        (["encode-captions", "--prompts", str(prompts), "--encoder", f"t5:{tmp_path}",
          "--out", str(caps)], "not a T5 model folder"),
        (["encode-captions", "--prompts", str(prompts), *enc, "--out",
          str(tmp_path / "c.txt")], ".npz or .safetensors"),
        (["encode-captions", "--prompts", str(prompts), "--encoder", "bert", "--out",
          str(caps)], "unknown encoder"),
        ([*sample, "--prompts", str(prompts), *enc, "--captions", str(caps)],
         "exclude each other"),
        ([*sample, "--prompts", str(prompts)], "--prompts needs --encoder"),
        ([*sample, "--prompts", str(tmp_path / "missing.txt"), *enc],
         "prompts file not found"),
        ([*sample, "--prompts", str(empty), *enc], "prompts file is empty"),
        ([*pairs, "--prompts", str(prompts), *enc, "--captions", str(caps)],
         "exclude each other"),
        ([*pairs, "--prompts", str(prompts), "--encoder", f"t5:{tmp_path / 'no-model'}"],
         "T5 model folder not found"),
        ([*pairs, "--captions", str(caps), "--max-length", "6"], "--max-length applies"),
        (["sample", "--teacher", "tiny_teachers:tiny_llamagen", "--method", "teacher",
          "--num", "2", "--out", str(tmp_path / "c2i"), "--prompts", str(prompts), *enc],
         "class-conditional: --prompts"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("ardistill: error:") and expected in err, (argv, err)
        assert "Traceback" not in err
    assert not caps.exists()
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
