"""Process group for `torchrun ... ardistill train` (`ardistill.utils.dist`): gloo on the CPU,
nccl on CUDA."""

from __future__ import annotations

import datetime

from ardistill.utils.dist import DistContext, from_env

TrainDist = DistContext


def dist_from_env(device_type: str = "cpu") -> TrainDist:
    """The torchrun context; initialises the process group when WORLD_SIZE > 1."""
    return from_env(datetime.timedelta(hours=2), "nccl" if device_type == "cuda" else "gloo")
