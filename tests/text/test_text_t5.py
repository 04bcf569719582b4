"""The T5 encoder against LlamaGen t2i's conventions (language/t5.py:T5Embedder,
autoregressive/sample/sample_t2i.py:main), on a tiny T5 built in the test: 120-slot style
max-length padding and truncation with the EOS kept, the encoder's last_hidden_state, valid
tokens moved to the end, mask flipped, padding zeroed; values equal to running T5EncoderModel
directly and re-arranging by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ardistill.text import EncoderSpec, encode_prompts, left_pad
from ardistill.text.t5 import T5Encoder, model_folder

PROMPTS = ["a cat", "A photo of a cat", "  the quick brown fox jumps over the lazy dog  "]


def _official_left_pad(embs: torch.Tensor, masks: torch.Tensor):
    """The left padding of sample_t2i.py, written out by hand for the test."""
    new_masks = torch.flip(masks, dims=[-1])
    rows = []
    for emb, m in zip(embs, masks):
        n = int(m.sum())
        rows.append(torch.cat([emb[n:], emb[:n]]))
    return torch.stack(rows) * new_masks[:, :, None], new_masks


def test_left_pad_is_the_official_rearrangement():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4, 7, 5, generator=g)
    n = torch.tensor([7, 1, 3, 6])
    m = torch.arange(7)[None] < n[:, None]
    cap, mask = left_pad(h, m)
    ref_cap, ref_mask = _official_left_pad(h, m.long())
    assert torch.equal(cap, ref_cap) and torch.equal(mask, ref_mask.bool())
    assert torch.equal(cap[1, -1], h[1, 0]) and (cap[1, :-1] == 0).all()
    with pytest.raises(ValueError, match="right-padded"):
        left_pad(h, m.flip(-1))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_t5_features_follow_the_official_layout(tiny_t5, dtype):
    from transformers import AutoTokenizer, T5EncoderModel

    T = 6
    spec = EncoderSpec.parse(f"t5:{tiny_t5}", max_length=T, dtype=dtype)
    cap, mask = encode_prompts(PROMPTS, spec)
    assert cap.shape == (3, T, 12) and cap.dtype == np.float32 and mask.dtype == np.bool_

    # the official pipeline, by hand: lower().strip(), tokenizer call of get_text_embeddings,
    # last_hidden_state, then the left padding of sample_t2i.py
    tok = AutoTokenizer.from_pretrained(str(tiny_t5), local_files_only=True)
    texts = [p.lower().strip() for p in PROMPTS]
    enc = tok(texts, max_length=T, padding="max_length", truncation=True,
              return_attention_mask=True, add_special_tokens=True, return_tensors="pt")
    model = T5EncoderModel.from_pretrained(str(tiny_t5), local_files_only=True,
                                           dtype=torch.bfloat16 if dtype == "bf16"
                                           else torch.float32).eval()
    with torch.no_grad():
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
                  )["last_hidden_state"]
    ref_cap, ref_mask = _official_left_pad(h, enc["attention_mask"])
    assert np.array_equal(mask, ref_mask.bool().numpy())
    assert np.array_equal(cap, ref_cap.float().numpy())

    ids, am = enc["input_ids"], enc["attention_mask"]
    n = am.sum(1)
    full = [len(tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
    assert n[0] < T, "the short prompt is padded"
    assert full[2] > T and n[2] == T, "the long prompt is truncated to max_length"
    for r in range(3):
        assert ids[r, n[r] - 1] == tok.eos_token_id  # EOS last, also when truncated
        assert mask[r].sum() == n[r] and mask[r, T - n[r]:].all()  # valid tokens at the end
        assert (cap[r, :T - n[r]] == 0).all()  # padding zero
        # the last caption token is the encoder's state at the EOS
        assert np.array_equal(cap[r, -1], h[r, n[r] - 1].float().numpy())
    # both official preprocessing branches lower-case: "A photo" encodes as "a photo"
    one, _ = encode_prompts(["a photo of a cat"], spec)
    assert np.array_equal(one[0], cap[1])


def test_t5_default_is_the_official_120_slots_in_bf16(tiny_t5):
    spec = EncoderSpec.parse(f"t5:{tiny_t5}")
    assert spec.length == 120 and spec.dtype_name == "bf16"
    enc = T5Encoder(tiny_t5, spec.length, torch.bfloat16)
    assert enc.model.dtype == torch.bfloat16
    toks = enc.tokenize(PROMPTS)
    assert toks["input_ids"].shape == (3, 120)
    cap, mask = encode_prompts(PROMPTS, spec, encoder=enc)
    assert cap.shape == (3, 120, 12) and mask[:, -1].all() and not mask[:, 0].any()


def test_t5_folder_and_spec_errors(tiny_t5, tmp_path):
    # the official --t5-path layout (FOLDER/flan-t5-xl) is found too
    official = tmp_path / "t5-ckpt"
    official.mkdir()
    (official / "flan-t5-xl").symlink_to(tiny_t5, target_is_directory=True)
    assert model_folder(official) == official / "flan-t5-xl"
    assert model_folder(tiny_t5) == tiny_t5
    with pytest.raises(ValueError, match="T5 model folder not found"):
        model_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a T5 model folder"):
        model_folder(tmp_path)
    with pytest.raises(ValueError, match="t5:PATH"):
        EncoderSpec.parse("t5")
    with pytest.raises(ValueError, match="unknown encoder"):
        EncoderSpec.parse("clip:x")
    with pytest.raises(ValueError, match="max-length"):
        EncoderSpec.parse("minilm", max_length=1)


def test_missing_extra_names_the_install_command(monkeypatch):
    import sys

    from ardistill.errors import UserError
    from ardistill.text.deps import require

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'ardistill\[text\]'"):
        require("transformers", "--encoder t5")
    with pytest.raises(UserError, match=r"ardistill\[text\]"):
        encode_prompts(["a cat"], EncoderSpec.parse("minilm"))
