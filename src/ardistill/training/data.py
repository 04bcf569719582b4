"""Which samples and timesteps each step uses: pure functions of (seed, step), so that the
step counter is the whole data position (exact resume) and every world size sees the same
global batch (DDP equals one process).

Global example k = step * B + j (B = global batch) is sample `perm_e[k mod n]` of epoch
e = k // n, where perm_e is a permutation of the n training samples drawn from a generator
seeded by (seed, e). Its timestep is drawn uniformly from the configured set with a generator
seeded by (seed, step). Rank r of W processes takes the contiguous rows
[r B / W, (r + 1) B / W) of the global batch (B must be a multiple of W).
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPOCH_SALT = 0x5EED_0001
_TIME_SALT = 0x5EED_0002


def _gen(seed: int, salt: int, k: int) -> torch.Generator:
    # Distinct, reproducible streams per (seed, purpose, k); 63-bit range of manual_seed.
    return torch.Generator().manual_seed((seed * 1_000_003 + salt * 7_919 + k) % (2**63 - 1))


class StepSampler:
    """n: training samples; batch: global batch; timesteps: the DD timestep set."""

    def __init__(self, n: int, batch: int, timesteps: tuple[int, ...], seed: int,
                 rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise ValueError("no training samples (is the held-out part the whole dataset?)")
        if batch % world:
            raise ValueError(f"the global batch {batch} must be a multiple of the number of "
                             f"processes {world}")
        self.n, self.batch, self.seed = n, batch, seed
        self.timesteps = torch.tensor(timesteps, dtype=torch.long)
        self.rank, self.world = rank, world
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = torch.randperm(self.n, generator=_gen(self.seed, _EPOCH_SALT,
                                                                        epoch))
        return self._perms[epoch]

    def global_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """(B,) int64 sample indices and (B,) int64 timesteps of `step` (0-based)."""
        k = step * self.batch + torch.arange(self.batch)
        epochs, pos = k // self.n, k % self.n
        idx = torch.empty(self.batch, dtype=torch.long)
        for e in epochs.unique().tolist():
            sel = epochs == e
            idx[sel] = self._perm(int(e))[pos[sel]]
        choice = torch.randint(len(self.timesteps), (self.batch,),
                               generator=_gen(self.seed, _TIME_SALT, step))
        return idx, self.timesteps[choice]

    def local_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """This rank's rows of `global_batch(step)`."""
        idx, t = self.global_batch(step)
        per = self.batch // self.world
        sl = slice(self.rank * per, (self.rank + 1) * per)
        return idx[sl], t[sl]
