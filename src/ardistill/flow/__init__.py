"""The AR flow map (method.md §2): a deterministic map from Gaussian noise to tokens whose
output distribution is the teacher's per-position sampling distribution.

Time convention, used everywhere in ardistill: `x_t = (1 - t) x0 + t eps`; t = 1 is noise,
t = 0 is data. Pure math: tensors in, tensors out, any device, no global RNG, no I/O.

- `posterior`: posterior weights, denoiser, velocity and score of a Dirac mixture (the
  textbook forms); input checks.
- `solver`: `map_noise_to_tokens` (the public map), `FlowMap` / `solve_flow` (with a config
  and per-row cost statistics); `steps`: time variable and multistep weights; `kernels`:
  the row-local posterior, denoiser and collapse-certificate kernels; `native`: the
  full-codebook posterior as a compiled CPU kernel (`posterior_kernel.c`, built on first use,
  PyTorch fallback); `dense`: the solver over the whole codebook for small codebooks (the DD
  choice's).
- `reference`: a float64 adaptive reference solver and the synthetic benchmark problems.
"""

from ardistill.flow.posterior import (
    check_flow_inputs,
    denoiser,
    flow_sum_tolerance,
    posterior_log_weights,
    score,
    velocity,
)
from ardistill.flow.solver import (
    DEFAULT_NUM_STEPS,
    FlowMap,
    FlowResult,
    FlowSolverConfig,
    map_noise_to_tokens,
    solve_flow,
)
from ardistill.flow.steps import TimeVariable

__all__ = [
    "DEFAULT_NUM_STEPS",
    "FlowMap",
    "FlowResult",
    "FlowSolverConfig",
    "check_flow_inputs",
    "denoiser",
    "flow_sum_tolerance",
    "map_noise_to_tokens",
    "posterior_log_weights",
    "score",
    "solve_flow",
    "TimeVariable",
    "velocity",
]
