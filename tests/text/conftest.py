"""A tiny T5 text encoder built here, in the layout of an official flan-t5-xl folder
(config.json + model.safetensors + spiece.model + tokenizer_config.json): random weights, a
sentencepiece model trained on a few captions, d_model 12 = the caption width of
tests/tiny_teachers.py:tiny_t2i. Loaded by `--encoder t5:FOLDER` offline like the real one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

CORPUS = ["a photo of a cat", "a blue car parked in front of a yellow wall",
          "an astronaut riding a horse in the forest", "a red apple on a table",
          "the quick brown fox jumps over the lazy dog", "a map made out of sushi"]
T5_DIM = 12  # the caption width D of tiny_t2i


def build_tiny_t5(folder: Path, d_model: int = T5_DIM, seed: int = 0) -> Path:
    sentencepiece = pytest.importorskip("sentencepiece")  # part of the `text` extra
    from transformers import T5Config, T5EncoderModel

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    # T5's special ids: pad 0, eos 1, unk 2, no bos
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 10), model_writer=model, vocab_size=48,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    (folder / "spiece.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 120}))
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=48, d_model=d_model, d_kv=4, d_ff=16, num_layers=2, num_heads=3,
                   pad_token_id=0, eos_token_id=1)
    T5EncoderModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return build_tiny_t5(tmp_path_factory.mktemp("t5") / "flan-t5-tiny")
