"""Choosers: how one AR step's sampling distribution becomes tokens (`teachers.base.Chooser`).

- "flow": the flow map (method.md §2) applied to each position's own DD noise
  (`NoiseChooser` over `build_noise_map`): the tokens are a deterministic function of the
  noise, and their distribution is the teacher's. Pair generation always uses it;
- "multinomial": one `torch.Generator` per sample, seeded from that sample's seed
  (`RowMultinomialChooser`), so a sample's tokens do not depend on the batch around it;
- "greedy": the argmax.

`build_noise_map` is the only place that constructs the flow map for a workflow; everything
else sees a `NoiseMap`: (R, d) float noise, (R, V) float32 probabilities -> (R,) int64 tokens,
rows independent of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ardistill.flow.dense import DENSE_MAX_VOCAB, DenseFlowMap
from ardistill.flow.solver import DEFAULT_NUM_STEPS, FlowMap, FlowSolverConfig
from ardistill.teachers.base import Chooser, TokenLayout, greedy_chooser

CHOICES = ("multinomial", "flow", "greedy")
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


# The DD token choice's solver (`sampling.methods.dd_token_choice`). The choice needs a
# token that is a deterministic function of the noise and follows the flow map, not the exact
# ODE limit that pair generation records: 4 main-grid steps, 8 pruned entries, tail steps 0.3
# wide and a 5-nat certificate (the chosen entry holds >= 99.3% of the posterior for the rest
# of the flow). On the shipped students' own inputs it returns 99.2-99.8% of the exact map's
# tokens at batch 64, 3.6-6.4x faster (scripts/flow_choice_cost.py; docs/flow.md,
# "The DD choice's solver").
CHOICE_NUM_STEPS = 4
_CHOICE = dict(prune_size=8, certify_margin=5.0, tail_du=0.3)


def choice_solver_config(flow_steps: int | None, vocab: int | None = None) -> FlowSolverConfig:
    """The DD choice's flow solver for `--flow-steps` (None: `CHOICE_NUM_STEPS`). vocab: the
    codebook size; small codebooks take larger chunks (about 2^23 probabilities, at least
    2048 rows, at most 32768): a batch's positions in one solver loop instead of several
    (rows never interact, so the tokens do not depend on it)."""
    if flow_steps is not None and flow_steps < 1:
        raise ValueError(f"flow_steps must be >= 1, got {flow_steps}")
    rows = 2048 if vocab is None else max(2048, min(32768, (1 << 23) // max(1, vocab)))
    return FlowSolverConfig(num_steps=CHOICE_NUM_STEPS if flow_steps is None else flow_steps,
                            max_rows=rows // 256 * 256, **_CHOICE)


def build_noise_map(codebook: Tensor, flow_steps: int | None, *,
                    config: FlowSolverConfig | None = None) -> NoiseMap:
    """codebook: (V, d) float32 as DD sees it (`teacher.dd_codebook()`) on the device that
    will hold the probabilities. Codebook constants are computed once here. config: a solver
    configuration instead of `solver_config(flow_steps)` (the DD choice's, for instance)."""
    return FlowMap(codebook, config or solver_config(flow_steps))


def choice_map(codebook: Tensor, flow_steps: int | None = None) -> NoiseMap:
    """The DD choice's flow map for a (V, d) float32 codebook: `choice_solver_config` in the
    pruned `FlowMap`, whose steps run in C where its compiled kernel applies (CPU, a C
    compiler); elsewhere (CUDA, no compiler) codebooks up to `DENSE_MAX_VOCAB` are solved over
    the whole codebook at every step (`flow.dense.DenseFlowMap`), fewer and larger PyTorch
    operations. Both return the same tokens up to floating-point ties (docs/flow.md, "The
    dense choice solver")."""
    cfg = choice_solver_config(flow_steps, codebook.shape[0])
    fm = FlowMap(codebook, cfg)
    if fm.packed is None and codebook.shape[0] <= DENSE_MAX_VOCAB:
        return DenseFlowMap(codebook, cfg)
    return fm


def dd_flow_choice(codebook: Tensor, flow_steps: int | None = None, temperature: float = 1.0
                   ) -> Callable[[Tensor, Tensor], Tensor]:
    """The "flow" DD token choice: (logits (B, l, V), the positions' input noise (B, l, d)) ->
    (B, l) int64 tokens, the choice solver's flow map (`choice_map`) of each position's own
    noise over softmax(logits / temperature). Used by sampling
    (`sampling.methods.dd_token_choice`) and by DD2 training when its generator samples with
    it."""
    if not temperature > 0:
        raise ValueError(f"DD temperature must be > 0, got {temperature}")
    noise_map = choice_map(codebook.float(), flow_steps)

    def flow_choice(logits: Tensor, noise: Tensor) -> Tensor:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return noise_map(noise.to(probs.device, torch.float32), probs).long()

    return flow_choice


@dataclass
class NoiseChooser:
    """A chooser that maps each position's distribution from its own noise.

    map: (B, l, d) noise, (B, l, V) probs -> (B, l) int64 tokens (the flow map, or any other
    deterministic map); noise: (B, N, d) float, the noise of every position of the B samples
    being decoded. At AR step s the positions `layout.step_slice(s)` are mapped (VAR: every
    token of a scale with its own distribution and its own noise)."""

    map: NoiseMap
    noise: Tensor
    layout: TokenLayout

    def __call__(self, step: int, probs: Tensor) -> Tensor:
        """probs: (B, step_size, V) float32 -> (B, step_size) int64 tokens."""
        eps = self.noise[:, self.layout.step_slice(step)].to(probs.device, torch.float32)
        if eps.shape[:2] != probs.shape[:2]:
            raise ValueError(f"step {step}: noise {tuple(eps.shape)} does not fit probs "
                             f"{tuple(probs.shape)}")
        return self.map(eps, probs).long()


@dataclass
class RowMultinomialChooser:
    """Multinomial sampling with one generator per sample (row of the batch).

    seeds: (B,) int64 per-sample seeds. Row b of every step draws from its own generator, so
    its tokens do not depend on which samples share the batch."""

    seeds: Sequence[int]

    def __post_init__(self) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in self.seeds]

    def __call__(self, step: int, probs: Tensor) -> Tensor:
        """probs: (B, l, V) float32 -> (B, l) int64 (drawn on the CPU, put on probs' device)."""
        if probs.shape[0] != len(self.generators):
            raise ValueError(f"{probs.shape[0]} rows but {len(self.generators)} generators")
        p = probs.detach().float().cpu()
        out = torch.stack([torch.multinomial(p[b], 1, generator=g)[:, 0]
                           for b, g in enumerate(self.generators)])
        return out.to(probs.device)


def make_chooser(choice: str, *, noise: Tensor, layout: TokenLayout, codebook: Tensor,
                 row_seeds: Sequence[int] | None = None, flow_steps: int | None = None) -> Chooser:
    """A chooser for `choice` in CHOICES.

    noise: (B, N, d) the batch's DD noise (used by "flow"); codebook: (V, d) float32
    `teacher.dd_codebook()`; row_seeds: (B,) per-sample seeds (needed by "multinomial");
    flow_steps: the flow solver's main-grid steps (None: its default)."""
    if choice == "greedy":
        return greedy_chooser
    if choice == "multinomial":
        if row_seeds is None:
            raise ValueError("the multinomial choice needs per-sample seeds (row_seeds)")
        return RowMultinomialChooser(list(row_seeds))
    if choice == "flow":
        return NoiseChooser(build_noise_map(codebook.float(), flow_steps), noise, layout)
    raise ValueError(f"teacher choice must be one of {', '.join(CHOICES)}, got {choice!r}")
