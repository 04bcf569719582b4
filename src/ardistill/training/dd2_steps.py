"""The three DD2 updates (method.md §10), as functions of the networks and one batch.

Networks: the frozen teacher (its exact conditional denoiser, `student.ardiffusion`), the
guidance ("fake score") network `fake` (an `ARDiffusion`), and the one-step generator `gen` (a
DD student at t = 0: noise (B, N, d) -> logits (B, N, V) for every position at once).

Generator samples live on the codebook: the tokens are the argmax of the generator's logits
(or its flow choice, the token choice it will sample with), `x0 = codebook[tokens]`, and
gradients reach the logits through the softmax-weighted codeword (a straight-through
estimator). So the teacher, the guidance network and the generator all
describe distributions over codebook vectors, where the scores are exact mixtures.

1. `regression_loss` (stage 1): the AR-diffusion model regresses the teacher's exact score on
   teacher sequences, in denoiser units: ||D_psi - D_teacher||^2 = (t^2 / (1 - t))^2
   ||s_psi - s_teacher||^2, zero iff the scores agree.
2. `guidance_loss`: denoising score matching of the guidance network on generator samples:
   ||D_fake(x_t, t | q_<i) - x0_i||^2 with q the generator's own tokens as prefix.
3. `generator_loss`: the generator moves along the difference of the two scores at its own
   noised tokens, conditioned on its own (stop-gradient) prefix. s_fake - s_teacher =
   (1 - t) (D_fake - D_teacher) / t^2; with the normalisation of distribution matching
   distillation (per sample, by the mean |x0 - D_teacher|) the time factor is absorbed:
   grad_x0 = (D_fake - D_teacher) / mean|x0 - D_teacher|, applied as
   0.5 ||x0 - stopgrad(x0 - grad_x0)||^2 (whose gradient in x0 is grad_x0).
4. `pairs_regression_loss` (optional, with a pairs dataset): DD1's cross-entropy on the flow
   map's pairs, added to the generator's loss with weight `pairs_weight`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ardistill.student.ardiffusion import ARDiffusion, noised, teacher_denoiser
from ardistill.teachers.base import Condition, Teacher


@dataclass
class Draws:
    """One batch's randomness: generator input noise (B, N, d), diffusion times (B,) in
    [t_min, t_max], token noise eta (B, N, d)."""

    noise: Tensor
    t: Tensor
    eta: Tensor


def draws(gen: torch.Generator, batch: int, n: int, d: int, t_min: float, t_max: float,
          device: torch.device) -> Draws:
    """Seeded draws on the CPU (device-independent streams), moved to `device`."""
    noise = torch.randn(batch, n, d, generator=gen)
    t = t_min + (t_max - t_min) * torch.rand(batch, generator=gen)
    eta = torch.randn(batch, n, d, generator=gen)
    return Draws(noise.to(device), t.to(device), eta.to(device))


def generate(gen_model, noise: Tensor, cond: Condition, codebook: Tensor,
             choose: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Generator samples: (tokens (B, N) int64, x0 (B, N, d) codewords whose gradient flows to
    the logits through the softmax-weighted codeword). choose: how the logits become tokens,
    (logits, noise) -> tokens (default: the argmax; `core.choosers.dd_flow_choice` for a
    generator that samples with the flow choice, `DD2Config.choice`)."""
    t0 = torch.zeros(noise.shape[0], dtype=torch.long, device=noise.device)
    n = noise.shape[1]
    logits = gen_model(noise, cond, t0, logits_range=(0, n)).logits.float()
    tokens = logits.argmax(-1) if choose is None else choose(logits.detach(), noise)
    soft = torch.softmax(logits, dim=-1) @ codebook
    x0 = codebook[tokens] + (soft - soft.detach())
    return tokens, x0


def regression_loss(fake: ARDiffusion, teacher: Teacher, tokens: Tensor, cond: Condition,
                    d: Draws, codebook: Tensor) -> Tensor:
    """Stage 1 on teacher sequences `tokens` (B, N): mean ||D_fake - D_teacher||^2."""
    x0 = codebook[tokens]
    x_t = noised(x0, d.t, d.eta)
    target = teacher_denoiser(teacher, tokens, cond, x_t, d.t)
    pred = fake(x_t, d.t, tokens, cond)
    return ((pred - target) ** 2).sum(-1).mean()


def guidance_loss(fake: ARDiffusion, tokens: Tensor, cond: Condition, d: Draws,
                  codebook: Tensor) -> Tensor:
    """DSM of the guidance network on generator tokens (B, N): mean ||D_fake - x0||^2."""
    x0 = codebook[tokens]
    x_t = noised(x0, d.t, d.eta)
    return ((fake(x_t, d.t, tokens, cond) - x0) ** 2).sum(-1).mean()


def generator_loss(gen_model, fake: ARDiffusion, teacher: Teacher, cond: Condition, d: Draws,
                   codebook: Tensor, choose: Callable[[Tensor, Tensor], Tensor] | None = None
                   ) -> tuple[Tensor, dict[str, float]]:
    """The distribution-matching loss of one generator batch, and what it measured: the mean
    score gap in denoiser units (0 when the guidance net and the teacher agree). choose: as
    `generate`."""
    tokens, x0 = generate(gen_model, d.noise, cond, codebook, choose)
    with torch.no_grad():
        x_t = noised(x0.detach(), d.t, d.eta)
        d_teacher = teacher_denoiser(teacher, tokens, cond, x_t, d.t)
        d_fake = fake(x_t, d.t, tokens, cond)
        norm = (x0.detach() - d_teacher).abs().mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        grad = (d_fake - d_teacher) / norm
    loss = 0.5 * ((x0 - (x0.detach() - grad)) ** 2).sum(-1).mean()
    gap = float((d_fake - d_teacher).pow(2).sum(-1).mean())
    return loss, {"score_gap": gap}


def pairs_regression_loss(gen_model, noise: Tensor, cond: Condition, tokens: Tensor) -> Tensor:
    """DD1's regression as an optional anchor of the generator (`DD2Config.pairs_weight`, the
    regression term of distribution matching distillation): mean cross-entropy of the
    generator's logits at t = 0 on a pairs batch, noise (B, N, d) -> the flow map's tokens
    (B, N). The flow map pushes the noise to the teacher's distribution, so this term pulls
    towards a map that covers every mode, against the mode seeking of the score update."""
    t0 = torch.zeros(noise.shape[0], dtype=torch.long, device=noise.device)
    n = noise.shape[1]
    logits = gen_model(noise, cond, t0, logits_range=(0, n)).logits.float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens)


@torch.no_grad()
def teacher_nll_bits(teacher: Teacher, tokens: Tensor, cond: Condition) -> float:
    """Mean -log2 p_teacher(token) over positions (the teacher's own sampling distribution,
    floored at 1e-12): how plausible the teacher finds the tokens."""
    probs = teacher.guided_probs(tokens, cond, teacher.default_sampling)
    p = probs.gather(-1, tokens[..., None].to(probs.device)).squeeze(-1).clamp_min(1e-12)
    return float(-p.log2().mean())
