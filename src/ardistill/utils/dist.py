"""Process-group plumbing shared by `torchrun ... ardistill gen-pairs` and `... ardistill train`.

Rank, world size and local rank come from torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a plain
process is rank 0 of 1 and every collective below is then a no-op. Pair generation exchanges
only small Python objects (the plan, errors) and barriers, so it always uses gloo, also when
the teacher runs on CUDA; training averages gradients and losses, with nccl on CUDA.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist

from ardistill.errors import RankError

# Pair generation: ranks wait at the final barrier for the slowest one, which can take days.
DEFAULT_TIMEOUT = datetime.timedelta(days=7)



@dataclass
class DistContext:
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

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 and return its result on every rank; an exception on rank 0 is
        re-raised on every rank (as RankError with rank 0's message on the others)."""
        result: Any = None
        error: str | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:
                if self.world_size == 1:
                    raise
                error = f"{type(e).__name__}: {e}"
                exc = e
        if self.world_size > 1:
            box = [(result, error)]
            tdist.broadcast_object_list(box, src=0)
            result, error = box[0]
            if error is not None:
                if self.is_main:
                    raise exc
                raise RankError(f"rank 0 failed: {error}")
        return result

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (identity on one process)."""
        if self.world_size == 1:
            return x
        y = x.detach().clone()
        tdist.all_reduce(y, op=tdist.ReduceOp.SUM)
        return y / self.world_size

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0 (None elsewhere)."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def close(self, clean: bool = False) -> None:
        """Tear down the process group this context made. clean: every rank finished its work
        (the success path): meet at a barrier first, so no rank closes its connections while
        another still has a message in flight to it (gloo aborts the process then)."""
        if self.initialized_here and tdist.is_initialized():
            if clean:
                tdist.barrier()
            tdist.destroy_process_group()
            self.initialized_here = False

    def __enter__(self) -> DistContext:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(clean=exc_type is None)


def from_env(timeout: datetime.timedelta = DEFAULT_TIMEOUT, backend: str = "gloo") -> DistContext:
    """The context torchrun describes in the environment; initialises a process group of
    `backend` when there is more than one process (and none exists yet)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    ctx = DistContext(rank, world, local)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout)
        ctx.initialized_here = True
    return ctx
