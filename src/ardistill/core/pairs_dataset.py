"""Reading a pairs dataset: `PairsDataset`, `PairsBatch`, `training_inputs`.

    ds = PairsDataset("pairs/")                  # a complete dataset (manifest.json)
    train, held = ds.split_holdout(1000)         # the last 1000 samples for evaluation
    batch = train.get(torch.randint(len(train), (64,)))
    inp = training_inputs(batch, t, teacher.dd_codebook(), ds.layout)
    # student(inp.x_t, batch.cond, inp.t); losses on inp.targets where inp.loss_mask

Shards are memory-mapped (numpy.memmap at the safetensors offsets) and opened on first use;
`get` reads only the requested rows. Noise is regenerated from each sample's stored seed on
the CPU (`core.seeds`). A dataset object pickles without its maps (DataLoader workers open
their own).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ardistill.core.captions import Captions
from ardistill.core.pairs_format import layout_of, open_shard, open_stored_captions, read_manifest
from ardistill.core.seeds import regenerate_noise
from ardistill.teachers.base import Condition, TokenLayout, dd_state


@dataclass
class PairsBatch:
    """noise: (B, N, d) float32; tokens: (B, N) int64; cond: B conditions; index: (B,) int64
    global sample indices (all on the CPU)."""

    noise: Tensor
    tokens: Tensor
    cond: Condition
    index: Tensor

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass
class TrainingInputs:
    """The student's inputs at DD timestep t (method.md §3, §5).

    x_t: (B, N, d) float32 -- codebook[tokens] before layout.begin(t), the noise after;
    targets: (B, N) int64 the teacher's tokens; t: (B,) int64 AR steps;
    loss_mask: (B, N) bool, True at positions >= begin(t) (where losses are taken)."""

    x_t: Tensor
    targets: Tensor
    t: Tensor
    loss_mask: Tensor


def training_inputs(batch: PairsBatch, t: Tensor | int, codebook: Tensor,
                    layout: TokenLayout) -> TrainingInputs:
    """X_t for timesteps t ((B,) int64 or one int for all) with `codebook[tokens]` as data
    (codebook: (V, d) float32, `teacher.dd_codebook()`). Tensors land on codebook's device.
    X_t is `teachers.base.dd_state(layout, codebook[tokens], noise, t)`."""
    dev = codebook.device
    b, n = batch.tokens.shape
    t = torch.full((b,), int(t), dtype=torch.long) if isinstance(t, int) else t.long()
    if t.shape != (b,):
        raise ValueError(f"t must be an int or (B={b},) timesteps, got shape {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > layout.num_steps):
        raise ValueError(f"timesteps must be in [0, {layout.num_steps}], got "
                         f"[{int(t.min())}, {int(t.max())}]")
    t = t.to(dev)
    tokens = batch.tokens.to(dev)
    x_t = dd_state(layout, codebook[tokens].float(), batch.noise.to(dev, torch.float32), t)
    return TrainingInputs(x_t, tokens, t, ~layout.data_mask(t, n))


class PairsDataset:
    """A complete pairs dataset (or the contiguous part [start, stop) of one).

    root: the dataset folder. Indices passed to `get` are local (0..len-1); `PairsBatch.index`
    holds the global sample indices."""

    def __init__(self, root: str | Path, *, start: int = 0, stop: int | None = None) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.identity: dict = self.manifest["identity"]
        gen = self.identity["generation"]
        self.num_total, self.shard_size = int(gen["num"]), int(gen["shard_size"])
        stop = self.num_total if stop is None else stop
        if not 0 <= start <= stop <= self.num_total:
            raise ValueError(f"subset [{start}, {stop}) outside [0, {self.num_total})")
        self.start, self.stop = start, stop
        self.layout = layout_of(self.identity)
        self.vocab_size = int(self.identity["vocab_size"])
        self.codebook_dim = int(self.identity["codebook_dim"])
        self._shards: dict[int, dict[str, np.ndarray]] = {}
        self._captions: Captions | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shards"], state["_captions"] = {}, None
        return state

    @property
    def teacher_fingerprint(self) -> str:
        return self.identity["teacher"]["fingerprint"]

    def subset(self, start: int, stop: int) -> PairsDataset:
        """Local samples [start, stop) as a dataset of their own."""
        if not 0 <= start <= stop <= len(self):
            raise ValueError(f"subset [{start}, {stop}) outside [0, {len(self)})")
        out = copy.copy(self)  # shares the (read-only) maps
        out.start, out.stop = self.start + start, self.start + stop
        return out

    def split_holdout(self, k: int) -> tuple[PairsDataset, PairsDataset]:
        """(the first len - k samples, the last k samples): a held-out evaluation set."""
        if not 0 <= k <= len(self):
            raise ValueError(f"cannot hold out {k} of {len(self)} samples")
        return self.subset(0, len(self) - k), self.subset(len(self) - k, len(self))

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._shards:
            rec = self.manifest["shards"][k]
            self._shards[k] = open_shard(self.root / rec["file"], self.identity, rec["first"],
                                         rec["count"])
        return self._shards[k]

    def _global(self, indices) -> np.ndarray:
        idx = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices,
                         dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices must be in [0, {len(self)}), got [{idx.min()}, "
                             f"{idx.max()}]")
        return idx + self.start

    def read(self, indices) -> dict[str, np.ndarray]:
        """Stored columns of local `indices`: index, noise_seed, cond (n,), tokens (n, N)."""
        g = self._global(indices)
        out = {"index": np.empty(len(g), np.int64), "noise_seed": np.empty(len(g), np.int64),
               "cond": np.empty(len(g), np.int64),
               "tokens": np.empty((len(g), self.layout.num_positions), np.int64)}
        shard_of = g // self.shard_size
        for k in np.unique(shard_of):
            pos = np.nonzero(shard_of == k)[0]
            rows = g[pos] - k * self.shard_size
            arrays = self._shard(int(k))
            for name in out:
                out[name][pos] = arrays[name][rows]
        return out

    def condition(self, cond: np.ndarray) -> Condition:
        if self.identity["condition"]["kind"] == "caption":
            if self._captions is None:
                self._captions = open_stored_captions(self.root)
            return self._captions.condition(cond)
        return Condition(labels=torch.from_numpy(np.asarray(cond, dtype=np.int64)))

    def get(self, indices) -> PairsBatch:
        """Local indices ((B,) ints) -> PairsBatch (noise regenerated from the stored seeds)."""
        cols = self.read(indices)
        noise = regenerate_noise(cols["noise_seed"], self.layout.num_positions,
                                 self.codebook_dim)
        return PairsBatch(noise, torch.from_numpy(cols["tokens"]), self.condition(cols["cond"]),
                          torch.from_numpy(cols["index"]))
