"""The teacher protocol: what Distilled Decoding needs from a pretrained AR image model.

Both families (LlamaGen raster, VAR next-scale) implement `Teacher`. Workflows (pair
generation, sampling, metrics) and the student only ever see this protocol, never a family's
internals.

Units. An AR *step* is what the teacher generates in one forward pass: one token for LlamaGen,
one scale for VAR. `TokenLayout` maps steps to positions of the flat token sequence
(raster order; VAR scale-major, raster inside a scale). The DD timestep `t` counts steps: at
`t` the first `layout.begin(t)` positions hold data and the rest hold noise (method.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenLayout:
    """How a teacher's flat token sequence splits into AR steps.

    kind: "raster" (LlamaGen: `grid * grid` steps of one token) or "multiscale" (VAR: one step
    per scale, scale `s` is a `patch_nums[s] x patch_nums[s]` grid).
    """

    kind: str
    grid: int  # side of the final token grid
    patch_nums: tuple[int, ...] = ()  # multiscale only

    def __post_init__(self) -> None:
        if self.kind not in ("raster", "multiscale"):
            raise ValueError(f"TokenLayout.kind must be raster or multiscale, not {self.kind!r}")
        if self.kind == "multiscale" and (not self.patch_nums or self.patch_nums[-1] != self.grid):
            raise ValueError(f"multiscale layout needs patch_nums ending at grid={self.grid}")

    @staticmethod
    def raster(grid: int) -> TokenLayout:
        return TokenLayout("raster", grid)

    @staticmethod
    def multiscale(patch_nums: Sequence[int]) -> TokenLayout:
        return TokenLayout("multiscale", int(patch_nums[-1]), tuple(int(p) for p in patch_nums))

    @property
    def step_sizes(self) -> tuple[int, ...]:
        if self.kind == "raster":
            return (1,) * (self.grid * self.grid)
        return tuple(p * p for p in self.patch_nums)

    @property
    def num_steps(self) -> int:
        return len(self.step_sizes)

    @property
    def num_positions(self) -> int:
        return sum(self.step_sizes)

    def begin(self, step: int) -> int:
        """First position of `step`; `begin(num_steps) == num_positions`. Also the number of
        data positions at DD timestep `t = step`."""
        if not 0 <= step <= self.num_steps:
            raise ValueError(f"step {step} outside [0, {self.num_steps}]")
        if self.kind == "raster":
            return step
        return sum(p * p for p in self.patch_nums[:step])

    def end(self, step: int) -> int:
        return self.begin(step + 1)

    def step_slice(self, step: int) -> slice:
        return slice(self.begin(step), self.end(step))

    def data_mask(self, t: Tensor, n: int | None = None) -> Tensor:
        """(B,) int64 DD timesteps -> (B, n) bool, True at data positions (< begin(t)).
        n: sequence length (default num_positions). On t's device."""
        n = self.num_positions if n is None else n
        begins = torch.tensor([self.begin(s) for s in range(self.num_steps + 1)],
                              device=t.device)
        return torch.arange(n, device=t.device)[None, :] < begins[t.long()][:, None]


@dataclass
class Condition:
    """A batch of conditions. Exactly one of `labels` / `caption` is set.

    labels: (B,) int64 class ids; `num_classes` (the extra row) is the CFG null class.
    caption: (B, T, D) float caption features, left-padded (valid rows at the end, padding 0).
    caption_mask: (B, T) bool, True = valid caption token. Required with `caption`.
    """

    labels: Tensor | None = None
    caption: Tensor | None = None
    caption_mask: Tensor | None = None

    def __post_init__(self) -> None:
        if (self.labels is None) == (self.caption is None):
            raise ValueError("Condition needs exactly one of labels or caption")
        if self.labels is not None and self.labels.dim() != 1:
            raise ValueError(f"labels must be (B,), got shape {tuple(self.labels.shape)}")
        if self.caption is not None:
            if self.caption.dim() != 3:
                raise ValueError(f"caption must be (B, T, D), got {tuple(self.caption.shape)}")
            if self.caption_mask is None or self.caption_mask.shape != self.caption.shape[:2]:
                raise ValueError("caption_mask must be given with shape (B, T) matching caption")

    def __len__(self) -> int:
        return int((self.labels if self.labels is not None else self.caption).shape[0])

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Condition:
        return Condition(
            labels=None if self.labels is None else fn(self.labels),
            caption=None if self.caption is None else fn(self.caption),
            caption_mask=None if self.caption_mask is None else fn(self.caption_mask),
        )

    def to(self, device: torch.device | str) -> Condition:
        return self._map(lambda x: x.to(device))

    def __getitem__(self, idx: slice | Tensor) -> Condition:
        return self._map(lambda x: x[idx])

    @staticmethod
    def cat(conds: Sequence[Condition]) -> Condition:
        first = conds[0]
        return Condition(
            labels=None if first.labels is None else torch.cat([c.labels for c in conds]),
            caption=None if first.caption is None else torch.cat([c.caption for c in conds]),
            caption_mask=None
            if first.caption_mask is None
            else torch.cat([c.caption_mask for c in conds]),
        )


@dataclass(frozen=True)
class SamplingConfig:
    """The teacher's sampling distribution (method.md §1).

    cfg_scale: guidance strength. LlamaGen: `uncond + s (cond - uncond)`; VAR: ramped over
        scales, `(1 + w) cond - w uncond` with `w = s * si / (S - 1)`. 1.0 (LlamaGen) / 0.0
        (VAR) means no guidance; each family documents its own neutral value.
    cfg_interval: LlamaGen only; decode steps `i > cfg_interval` use conditional logits only
        (-1: guidance everywhere).
    temperature, top_k (0 = off), top_p (1.0 = off): filtering, each family with its official
        semantics (LlamaGen: HF nucleus; VAR: its own ascending-cumsum top-p).
    """

    cfg_scale: float = 1.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg_interval: int = -1

    def replace(self, **kw) -> SamplingConfig:
        return replace(self, **kw)


@runtime_checkable
class DecodeSession(Protocol):
    """Incremental AR decoding of one batch (KV cache inside).

    `step` is the index of the next AR step. `next_probs()` returns the sampling distribution of
    the positions of that step; `push(tokens)` appends the chosen tokens and advances.
    """

    step: int

    def next_probs(self) -> Tensor:
        """(B, step_size, V) float32: guided, temperature-scaled, filtered; rows sum to 1."""
        ...

    def push(self, tokens: Tensor) -> None:
        """tokens: (B, step_size) int64 token ids of step `self.step`."""
        ...


@runtime_checkable
class Teacher(Protocol):
    """A pretrained AR teacher plus its VQ tokenizer, as DD sees it."""

    name: str  # preset name ("llamagen-b", "mnist-var", ...)
    family: str  # "llamagen" | "var"
    layout: TokenLayout
    vocab_size: int
    codebook_dim: int
    num_classes: int  # 0 for text-conditional teachers
    image_size: int  # pixels per side of decoded images
    default_sampling: SamplingConfig

    def fingerprint(self) -> str:
        """Hex digest of all weights (model + tokenizer): the teacher's identity in datasets."""
        ...

    def dd_codebook(self) -> Tensor:
        """(V, d) float32 codebook as DD sees it: LlamaGen L2-normalised rows, VAR raw."""
        ...

    def start(
        self,
        cond: Condition,
        sampling: SamplingConfig,
        prefix: Tensor | None = None,
        **options,
    ) -> DecodeSession:
        """Begin decoding. `prefix`: (B, layout.begin(k)) int64 tokens of the first k steps,
        consumed in one pass; the session then starts at step k."""
        ...

    def forward_logits(self, tokens: Tensor, cond: Condition) -> Tensor:
        """Teacher forcing: (B, N) int64 -> (B, N, V) float32 unguided logits; row i is the
        prediction for token i given the condition and the earlier steps."""
        ...

    def guided_probs(self, tokens: Tensor, cond: Condition, sampling: SamplingConfig) -> Tensor:
        """Teacher forcing: (B, N) -> (B, N, V) float32 sampling distributions (CFG, temperature,
        filtering), equal to what `start(...).next_probs()` gives step by step."""
        ...

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """(B, N) int64 -> (B, 3, H, W) float32 images in [-1, 1] (family's own clamping)."""
        ...

    def decode_latents(self, x: Tensor) -> Tensor:
        """(B, N, d) float codebook-space vectors (DD layout) -> (B, 3, H, W) in [-1, 1].
        `decode_latents(dd_codebook()[tokens]) == decode_tokens(tokens)`."""
        ...

    def sample_conditions(self, n: int, generator: torch.Generator) -> Condition:
        """n conditions drawn uniformly (class-conditional teachers)."""
        ...


def dd_state(layout: TokenLayout, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """X_t of DD (method.md §3): `x_data` (B, N, d) at the positions before `layout.begin(t)`,
    the ORIGINAL `noise` (B, N, d) after. t: (B,) int64 AR steps. The one construction of X_t,
    used by training, sampling and the DD procedure."""
    m = layout.data_mask(t, x_data.shape[1])[..., None]
    return torch.where(m, x_data, noise)


# A chooser turns a step's sampling distribution into tokens: multinomial, greedy, flow map.
# step: AR step index; probs: (B, step_size, V) float32 -> (B, step_size) int64.
Chooser = Callable[[int, Tensor], Tensor]


def greedy_chooser(step: int, probs: Tensor) -> Tensor:
    return probs.argmax(dim=-1)


@dataclass
class MultinomialChooser:
    """Ordinary sampling from the teacher's distribution with an explicit generator."""

    generator: torch.Generator | None = None

    def __call__(self, step: int, probs: Tensor) -> Tensor:
        flat = probs.reshape(-1, probs.shape[-1])
        out = torch.multinomial(flat, 1, generator=self.generator)
        return out.view(probs.shape[:-1])


def decode(
    teacher: Teacher,
    cond: Condition,
    sampling: SamplingConfig,
    choose: Chooser,
    prefix: Tensor | None = None,
    end_step: int | None = None,
    **options,
) -> Tensor:
    """Run the teacher AR loop. Returns (B, layout.begin(end_step)) int64 tokens (prefix
    included). `end_step=None` decodes to the end."""
    layout = teacher.layout
    end = layout.num_steps if end_step is None else end_step
    session = teacher.start(cond, sampling, prefix=prefix, **options)
    chunks = [] if prefix is None else [prefix]
    while session.step < end:
        step = session.step
        tokens = choose(step, session.next_probs()).long()
        session.push(tokens)
        chunks.append(tokens)
    return torch.cat(chunks, dim=1)
