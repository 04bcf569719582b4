"""Exponential moving average of the student's weights (used for evaluation and export).

    ema = EMA(student, decay=0.999)            # a frozen deep copy of the student
    ema.update(student, step)                  # after every optimizer step
    ema.module                                 # the averaged network (eval mode)

Update (per floating parameter p): `e <- d e + (1 - d) p`, with d = decay, or with warmup
`d = min(decay, (1 + s) / (10 + s))` at update number s (0-based), so early averages are not
dominated by the initial weights. Buffers are copied (they are constants in the students).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, step: int, warmup: bool) -> float:
    """The decay used by update number `step` (0-based)."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class EMA:
    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Average `model`'s parameters in; returns the decay used."""
        d = ema_decay_at(self.decay, step, self.warmup)
        ema_p = list(self.module.parameters())
        src_p = list(model.parameters())
        if len(ema_p) != len(src_p):
            raise ValueError("EMA and model have different parameter lists")
        for e, p in zip(ema_p, src_p):
            e.lerp_(p.detach().to(e.dtype), 1.0 - d)  # e + (1 - d)(p - e) = d e + (1 - d) p
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)
        return d

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.module.load_state_dict(sd, strict=True)
