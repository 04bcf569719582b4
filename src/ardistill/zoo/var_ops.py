"""VAR pieces for the teacher-training loops (`zoo/families.py` protocol): the official
multi-scale `VQVAE` and `VAR` classes at whatever size the preset gives.

Teacher forcing (the official `VAR.forward` input): the frozen tokenizer turns the tokens of
every scale into the area-resized f_hat after the previous scale (`indices_to_var_input`); the
labels to drop become the null class (`drop_labels`'s rule, with the loop's own draw).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ardistill.teachers.preset import TeacherPreset
from ardistill.teachers.var.config import VARConfig, VQVAEConfig
from ardistill.teachers.var.model import VAR
from ardistill.teachers.var.teacher import VARTeacher
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.teachers.var.weights import load_vqvae, random_var, random_vqvae


class VAROps:
    family = "var"

    def new_tokenizer(self, cfg: VQVAEConfig, generator: torch.Generator) -> VQVAE:
        return random_vqvae(cfg, generator).train()

    def tokenizer_forward(self, tok: VQVAE, images: Tensor) -> tuple[Tensor, Tensor]:
        recon, q = tok(images)
        return recon, q.vq_loss

    @torch.no_grad()
    def encode(self, tok: VQVAE, images: Tensor) -> Tensor:
        return tok.encode(images)

    @torch.no_grad()
    def decode(self, tok: VQVAE, tokens: Tensor) -> Tensor:
        return tok.decode_indices(tokens).float()

    def codebook_size(self, cfg: VQVAEConfig) -> int:
        return cfg.vocab_size

    def new_ar(self, cfg: VARConfig, generator: torch.Generator) -> VAR:
        return random_var(cfg, generator).train()  # the official init (built on meta first)

    def class_dropout(self, cfg: VARConfig) -> float:
        return cfg.cond_drop_rate

    def ar_logits(self, ar: VAR, tok: VQVAE, tokens: Tensor, labels: Tensor,
                  drop: Tensor, caption_mask: Tensor | None = None) -> Tensor:
        if caption_mask is not None:
            raise ValueError("VAR teachers are class-conditional: no caption features")
        with torch.no_grad():  # the tokenizer is frozen: its f_hat inputs carry no gradient
            x = tok.quantize.indices_to_var_input(tok.split_scales(tokens))
        labels = torch.where(drop, ar.cfg.num_classes, labels)
        return ar(labels, x)

    def load_tokenizer(self, cfg: VQVAEConfig, path: str | Path) -> VQVAE:
        return load_vqvae(cfg, path, what=f"VAR VQVAE ({path})")

    def make_teacher(self, preset: TeacherPreset, ar: VAR, tok: VQVAE) -> VARTeacher:
        return VARTeacher(preset.name, ar, tok, preset.sampling)


OPS = VAROps()
