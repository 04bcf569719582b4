"""The VAR classes stay trainable (the zoo trains MNIST tokenizers and teachers with them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ardistill.teachers.var.model import drop_labels
from ardistill.teachers.var.tiny import tiny_teacher


def test_vqvae_training_step_gives_losses_and_gradients():
    t = tiny_teacher(seed=3)
    vae = t.vqvae.train()
    img = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    hits_before = vae.quantize.ema_vocab_hit_SV.clone()
    rec, q = vae(img)
    assert rec.shape == img.shape
    assert [i.shape for i in q.indices] == [(4, 1), (4, 4), (4, 9), (4, 16)]
    # straight-through: the value is the quantised f_hat of the same indices
    fhat = vae.quantize.vectors_to_fhat(vae.quantize.embedding(torch.cat(q.indices, 1)))
    torch.testing.assert_close(q.f_hat, fhat, atol=1e-5, rtol=0)
    loss = F.mse_loss(rec, img) + q.vq_loss
    assert q.codebook_loss > 0 and q.commitment_loss > 0
    torch.testing.assert_close(q.commitment_loss, q.codebook_loss * vae.cfg.beta)
    loss.backward()
    for name in ("encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight",
                 "quantize.embedding.weight", "quantize.quant_resi.qresi_ls.0.weight"):
        grad = dict(vae.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert not torch.equal(vae.quantize.ema_vocab_hit_SV, hits_before)  # usage recorded
    vae.eval()
    with torch.no_grad():
        after = vae.quantize.ema_vocab_hit_SV.clone()
        vae(img)
    assert torch.equal(vae.quantize.ema_vocab_hit_SV, after)  # eval does not record


def test_var_training_step_reaches_every_parameter():
    t = tiny_teacher(seed=4)
    model, vae = t.model.train(), t.vqvae
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, t.vocab_size, (4, 30), generator=g)
    labels = drop_labels(torch.tensor([1, 2, 3, 4]), 0.5, t.num_classes, g)
    x = vae.quantize.indices_to_var_input(vae.split_scales(tokens))
    logits = model(labels, x)
    loss = F.cross_entropy(logits.reshape(-1, t.vocab_size), tokens.reshape(-1))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_drop_labels_rate_and_generator():
    lab = torch.arange(10)
    g = lambda: torch.Generator().manual_seed(7)
    assert torch.equal(drop_labels(lab, 0.0, 10, g()), lab)
    assert torch.equal(drop_labels(lab, 1.0, 10, g()), torch.full((10,), 10))
    assert torch.equal(drop_labels(lab, 0.5, 10, g()), drop_labels(lab, 0.5, 10, g()))
