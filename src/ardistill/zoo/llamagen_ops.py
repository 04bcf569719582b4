"""LlamaGen pieces for the teacher-training loops (`zoo/families.py` protocol): the official
`VQModel` and `GPT` classes at whatever size the preset gives."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.llamagen.loading import load_vq, random_vq
from ardistill.teachers.llamagen.teacher import LlamaGenTeacher, caption_attention_mask
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.teachers.preset import TeacherPreset
from ardistill.utils.checkpoint import read_state_dict


class LlamaGenOps:
    family = "llamagen"

    def new_tokenizer(self, cfg: VQConfig, generator: torch.Generator) -> VQModel:
        return random_vq(cfg, generator=generator).train()

    def tokenizer_forward(self, tok: VQModel, images: Tensor) -> tuple[Tensor, Tensor]:
        recon, q = tok(images)
        return recon, q.loss

    @torch.no_grad()
    def encode(self, tok: VQModel, images: Tensor) -> Tensor:
        return tok.encode(images).indices.reshape(images.shape[0], -1)

    @torch.no_grad()
    def decode(self, tok: VQModel, tokens: Tensor) -> Tensor:
        g = int(round(tokens.shape[1] ** 0.5))
        return tok.decode_code(tokens, (g, g)).float()

    def codebook_size(self, cfg: VQConfig) -> int:
        return cfg.codebook_size

    def new_ar(self, cfg: GPTConfig, generator: torch.Generator) -> GPT:
        with torch.device("meta"):  # no draw from the global RNG by nn.Linear's own init
            gpt = GPT(cfg)
        gpt = gpt.to_empty(device="cpu")
        gpt.init_weights(generator)  # official init: N(0, 0.02), output head zeroed
        return gpt.train()

    def class_dropout(self, cfg: GPTConfig) -> float:
        return cfg.class_dropout_prob

    def ar_logits(self, ar: GPT, tok: VQModel, tokens: Tensor, labels: Tensor,
                  drop: Tensor, caption_mask: Tensor | None = None) -> Tensor:
        mask = None
        if caption_mask is not None:  # t2i: padded caption columns masked, as in sampling
            mask = caption_attention_mask(caption_mask, caption_mask.shape[1] + tokens.shape[1] - 1)
        # (B, N, V): row j predicts token j
        return ar(tokens[:, :-1], labels, mask, cond_drop=drop)

    def load_tokenizer(self, cfg: VQConfig, path: str | Path) -> VQModel:
        return load_vq(cfg, read_state_dict(path), what="LlamaGen VQ tokenizer", source=str(path))

    def make_teacher(self, preset: TeacherPreset, ar: GPT, tok: VQModel) -> LlamaGenTeacher:
        return LlamaGenTeacher(preset.name, ar, tok, preset.sampling)


OPS = LlamaGenOps()
