"""What the teacher-training loops need from a model family, behind one small protocol.

The loops (`zoo/train_teacher.py`) are family-agnostic; each family (`zoo/llamagen_ops.py`,
`zoo/var_ops.py`) says how to build, run, encode with and load its tokenizer and AR model.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ardistill.teachers.base import Teacher
from ardistill.teachers.preset import TeacherPreset

FAMILY_OPS = {
    "llamagen": "ardistill.zoo.llamagen_ops",
    "var": "ardistill.zoo.var_ops",
}


class FamilyOps(Protocol):
    family: str

    def new_tokenizer(self, cfg: Any, generator: torch.Generator) -> nn.Module:
        """A freshly initialised tokenizer (train mode), every draw from `generator`."""
        ...

    def tokenizer_forward(self, tok: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: images (B, 3, H, W) in [-1, 1] -> (reconstruction (B, 3, H, W),
        quantiser loss: codebook + commitment, 0-dim)."""
        ...

    def encode(self, tok: nn.Module, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, N) int64 tokens in the teacher's layout."""
        ...

    def decode(self, tok: nn.Module, tokens: Tensor) -> Tensor:
        """(B, N) int64 -> (B, 3, H, W) float32 images (not clamped)."""
        ...

    def codebook_size(self, cfg: Any) -> int: ...

    def new_ar(self, cfg: Any, generator: torch.Generator) -> nn.Module:
        """A freshly initialised AR model (official init), every draw from `generator`."""
        ...

    def class_dropout(self, cfg: Any) -> float:
        """Rate of label dropout to the null class (the config's own value)."""
        ...

    def ar_logits(self, ar: nn.Module, tok: nn.Module, tokens: Tensor, labels: Tensor,
                  drop: Tensor, caption_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: tokens (B, N) int64, labels (B,) int64, drop (B,) bool (-> null
        class) -> (B, N, V) float32 logits, row i predicting token i. `tok` (the frozen
        tokenizer) builds the AR inputs where the family needs it (VAR's f_hat inputs).
        Text-conditional models: labels are caption features (B, T, D) with caption_mask
        (B, T) bool (left-padded); families without them raise ValueError."""
        ...

    def load_tokenizer(self, cfg: Any, path: str | Path) -> nn.Module:
        """Strictly load a tokenizer file (eval mode, float32)."""
        ...

    def make_teacher(self, preset: TeacherPreset, ar: nn.Module, tok: nn.Module) -> Teacher: ...


def family_ops(family: str) -> FamilyOps:
    if family not in FAMILY_OPS:
        raise ValueError(f"no teacher training for family {family!r}; known: {sorted(FAMILY_OPS)}")
    return importlib.import_module(FAMILY_OPS[family]).OPS
