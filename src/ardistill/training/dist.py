"""Process group for `torchrun ... ardistill train`: rank / world from torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK); gloo on the CPU, nccl on CUDA. A plain process is rank 0 of 1.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class TrainDist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            tdist.barrier()

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (identity on one process)."""
        if self.world_size == 1:
            return x
        y = x.detach().clone()
        tdist.all_reduce(y, op=tdist.ReduceOp.SUM)
        return y / self.world_size

    def close(self) -> None:
        if self.initialized_here and tdist.is_initialized():
            tdist.destroy_process_group()
            self.initialized_here = False


def dist_from_env(device_type: str = "cpu") -> TrainDist:
    """The torchrun context; initialises the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    ctx = TrainDist(rank, world, local)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        tdist.init_process_group(backend, rank=rank, world_size=world,
                                 timeout=datetime.timedelta(hours=2))
        ctx.initialized_here = True
    return ctx
