"""The one seam between pair generation and the flow map (`ardistill.flow`, method.md §2).

`build_noise_map` is the only place that constructs the map; everything else sees a
`NoiseMap`: (R, d) float noise, (R, V) float32 probabilities -> (R,) int64 tokens, rows
independent of each other. `FlowChooser` turns it into a `teachers.base.Chooser`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ardistill.flow import DEFAULT_NUM_STEPS, FlowMap, FlowSolverConfig
from ardistill.teachers.base import TokenLayout

NoiseMap = Callable[[Tensor, Tensor], Tensor]


def solver_config(flow_steps: int | None) -> FlowSolverConfig:
    """The flow solver's configuration for `--flow-steps` (None: the flow map's default)."""
    if flow_steps is not None and flow_steps < 1:
        raise ValueError(f"flow_steps must be >= 1, got {flow_steps}")
    return FlowSolverConfig(num_steps=DEFAULT_NUM_STEPS if flow_steps is None else flow_steps)


def flow_identity(flow_steps: int | None) -> dict:
    """The flow map's settings as recorded in a dataset (every knob that changes tokens)."""
    cfg = asdict(solver_config(flow_steps))
    cfg["dtype"] = str(cfg["dtype"]).removeprefix("torch.")
    return {"map": "ardistill.flow.map_noise_to_tokens", "solver": cfg}


def build_noise_map(codebook: Tensor, flow_steps: int | None) -> NoiseMap:
    """codebook: (V, d) float32 as DD sees it (`teacher.dd_codebook()`) on the device that
    will hold the probabilities. Codebook constants are computed once here."""
    return FlowMap(codebook, solver_config(flow_steps))


@dataclass
class FlowChooser:
    """A `teachers.base.Chooser` that maps each position's distribution from its own noise.

    noise: (B, N, d) float, the noise of every position of the B samples being decoded; at AR
    step s the positions `layout.step_slice(s)` are mapped (VAR: every token of a scale with
    its own distribution and its own noise)."""

    noise_map: NoiseMap
    noise: Tensor
    layout: TokenLayout

    def __call__(self, step: int, probs: Tensor) -> Tensor:
        """probs: (B, step_size, V) float32 -> (B, step_size) int64 tokens."""
        eps = self.noise[:, self.layout.step_slice(step)].to(probs.device, torch.float32)
        if eps.shape[:2] != probs.shape[:2]:
            raise ValueError(f"step {step}: noise {tuple(eps.shape)} does not fit probs "
                             f"{tuple(probs.shape)}")
        return self.noise_map(eps, probs).long()
