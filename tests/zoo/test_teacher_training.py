"""The teacher-training stages on tiny real models: losses fall, runs are deterministic with a
seed, the helpers (shifts, tokenising, EMA, schedule) do what they say."""

from __future__ import annotations

import pytest
import torch

from ardistill.data.mnist import mnist_images
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.utils.checkpoint import fingerprint
from ardistill.zoo.families import family_ops
from ardistill.zoo.recipes import ARRecipe, TeacherRecipe, TokenizerRecipe, teacher_recipe
from ardistill.zoo.train_teacher import (
    EMA,
    lr_factor,
    token_nll,
    tokenize,
    train_ar,
    train_tokenizer,
    translate,
)

TINY_VQ = VQConfig(codebook_size=64, codebook_embed_dim=8, encoder_ch_mult=(1, 1, 1),
                   decoder_ch_mult=(1, 1, 1), z_channels=32, ch=32, num_res_blocks=1,
                   codebook_show_usage=False)
TINY_GPT = GPTConfig(dim=32, n_layer=1, n_head=2, multiple_of=32, num_classes=10,
                     vocab_size=64, block_size=64)
OPS = family_ops("llamagen")


@pytest.fixture(scope="module")
def digits():
    x, y = mnist_images("train")
    return x[::450][:10], y[::450][:10]  # one digit of each class


def test_translate_moves_pixels_and_fills_black():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = translate(x, 1, -1)
    assert torch.equal(out[:, :, 1:, :3], x[:, :, :3, 1:])
    assert (out[:, :, 0] == -1).all() and (out[:, :, :, 3] == -1).all()
    assert translate(x, 0, 0) is x


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(55, 100, 10) < lr_factor(30, 100, 10)


def test_ema_averages_parameters_and_copies_buffers():
    m = torch.nn.Linear(2, 2)
    m.register_buffer("mask", torch.tensor([0.0, float("-inf")]))
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.mask[0] = 2.0
    before = ema.module.weight.clone()
    ema.update(m, step=100)  # decay 0.5
    assert torch.allclose(ema.module.weight, 0.5 * before + 0.5)
    assert ema.module.mask.tolist() == [2.0, float("-inf")]  # copied, never NaN
    assert not ema.module.weight.requires_grad


def test_tokenizer_training_lowers_the_loss_and_is_deterministic(digits):
    x, _ = digits
    recipe = TokenizerRecipe(steps=8, batch_size=5, warmup=2, lr=3e-3)
    tok, rec = train_tokenizer(OPS, TINY_VQ, recipe, x, seed=3, progress=False)
    again, _ = train_tokenizer(OPS, TINY_VQ, recipe, x, seed=3, progress=False)
    other, _ = train_tokenizer(OPS, TINY_VQ, recipe, x, seed=4, progress=False)
    assert fingerprint(tok) == fingerprint(again) != fingerprint(other)
    # the loss of the trained tokenizer on the training digits is below the initial one
    init = OPS.new_tokenizer(TINY_VQ, torch.Generator().manual_seed(3)).eval()
    with torch.no_grad():
        err = [(OPS.tokenizer_forward(m, x)[0] - x).pow(2).mean().item() for m in (init, tok)]
    assert err[1] < 0.8 * err[0]
    assert rec["seconds"] > 0 and set(rec["final_losses_last50"]) == {"l1", "l2", "vq", "loss"}
    tokens = OPS.encode(tok, x)
    assert tokens.shape == (10, 64) and tokens.dtype == torch.int64
    assert OPS.decode(tok, tokens).shape == (10, 3, 32, 32)


def test_tokenize_covers_every_shift(digits):
    x, y = digits
    tok = OPS.new_tokenizer(TINY_VQ, torch.Generator().manual_seed(0)).eval()
    tokens, labels = tokenize(OPS, tok, x[:3], y[:3], shifts=1, batch_size=2)
    assert tokens.shape == (27, 64) and labels.tolist() == y[:3].tolist() * 9
    centre = 4 * 3  # offsets are shift-major: (0, 0) is the 5th of 9
    assert torch.equal(tokens[centre : centre + 3], OPS.encode(tok, x[:3]))


def test_ar_training_lowers_the_nll_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    # two fixed sequences per class: learnable in a few steps
    base = torch.randint(0, 64, (20, 64), generator=g)
    labels = torch.arange(20) % 10
    recipe = ARRecipe(steps=30, batch_size=10, warmup=3, lr=1e-2, ema_decay=0.5)
    init = OPS.new_ar(TINY_GPT, torch.Generator().manual_seed(1))
    model, rec = train_ar(OPS, TINY_GPT, recipe, None, base, labels, seed=1,
                          val=(base, labels), eval_every=15, progress=False)
    again, _ = train_ar(OPS, TINY_GPT, recipe, None, base, labels, seed=1, progress=False)
    assert fingerprint(model) == fingerprint(again)
    nll0 = token_nll(OPS, init, None, base, labels)
    nll1 = token_nll(OPS, model, None, base, labels)
    assert nll0 == pytest.approx(torch.log(torch.tensor(64.0)).item(), rel=1e-4)  # zero head
    assert nll1 < nll0 - 0.5
    assert [c["step"] for c in rec["curve"]] == [15, 30]
    assert rec["curve"][-1]["val_nll"] == pytest.approx(nll1, rel=1e-5)
    assert not model.training


def test_ar_training_leaves_the_global_rng_alone():
    base = torch.randint(0, 64, (4, 64), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_ar(OPS, TINY_GPT, ARRecipe(steps=2, batch_size=2, warmup=1), None, base,
             torch.arange(4), seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_recipes_validate():
    assert teacher_recipe("mnist-llamagen").preset == "mnist-llamagen"
    with pytest.raises(KeyError, match="no training recipe"):
        teacher_recipe("llamagen-b")
    with pytest.raises(ValueError, match="steps"):
        TeacherRecipe("x", tokenizer=TokenizerRecipe(steps=0)).validate()
    with pytest.raises(ValueError, match="ema_decay"):
        ARRecipe(ema_decay=1.0).validate()
    with pytest.raises(ValueError, match="limit"):
        TeacherRecipe("x", limit=0).validate()


def test_var_stages_train_and_are_deterministic(digits):
    from ardistill.teachers.var.tiny import tiny_configs

    ops = family_ops("var")
    var_cfg, vae_cfg = tiny_configs(num_classes=10, vocab_size=32, cvae=8, depth=1)
    x, y = digits
    small = torch.nn.functional.avg_pool2d(x, 4)  # (10, 3, 8, 8): the tiny VQVAE's size
    recipe = TokenizerRecipe(steps=6, batch_size=5, warmup=1, lr=3e-3, max_shift=0)
    tok, _ = train_tokenizer(ops, vae_cfg, recipe, small, seed=0, progress=False)
    again, _ = train_tokenizer(ops, vae_cfg, recipe, small, seed=0, progress=False)
    assert fingerprint(tok) == fingerprint(again)
    tokens = ops.encode(tok, small)
    assert tokens.shape == (10, 30) and ops.decode(tok, tokens).shape == (10, 3, 8, 8)
    ar_recipe = ARRecipe(steps=25, batch_size=10, warmup=2, lr=1e-2, ema_decay=0.5, shifts=0)
    init = ops.new_ar(var_cfg, torch.Generator().manual_seed(2))
    model, _ = train_ar(ops, var_cfg, ar_recipe, tok, tokens, y, seed=2, progress=False)
    again, _ = train_ar(ops, var_cfg, ar_recipe, tok, tokens, y, seed=2, progress=False)
    assert fingerprint(model) == fingerprint(again)
    nll0, nll1 = (token_nll(ops, m, tok, tokens, y) for m in (init, model))
    assert nll1 < nll0 - 0.3
