"""The AR-diffusion model of DD2 (method.md §10): conditional scores of a noised token given a
clean prefix, for every position at once.

For position i with a clean prefix q_<i (and the condition), a model gives a distribution p_i
over codebook vectors c_j; noising one token with the flow convention `x_t = (1 - t) x0 + t eps`
makes the law of x_t a Gaussian mixture whose denoiser and score are closed-form
(`flow.posterior.denoiser`, `flow.posterior.score`):

    D(x_t, t | q_<i) = sum_j w_j c_j,  w_j ∝ p_ij N(x_t; (1 - t) c_j, t^2 I)
    s(x_t, t | q_<i) = -(x_t - (1 - t) D) / t^2

So a network that outputs the per-position distributions p_i by teacher forcing on q is an
AR-diffusion model: its score at ANY noised token x_t^i follows exactly, in one pass for all
positions (VAR: every token of every scale). The teacher is one (`teacher_denoiser`: its
guided, filtered sampling distributions give its exact conditional score); `ARDiffusion` is a
trainable one, a copy of the teacher's AR network whose unguided logits define p_i. It starts
as the teacher without guidance; regressing the teacher's exact score on teacher samples
makes it the guided teacher (a guidance-free copy), and it then initialises the guidance
("fake score") network that follows the generator's distribution.

The noised token enters only through the posterior, never the network: a position's score
can depend on nothing but its own noised token and the clean prefix (no leak of the noised
tokens of other positions, which a causal or block-causal attention over noised inputs would
let in, e.g. between the tokens of one VAR scale).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ardistill.flow.posterior import denoiser
from ardistill.teachers.base import Condition, SamplingConfig, Teacher


def ar_network(teacher: Teacher) -> nn.Module:
    """The teacher's AR network (LlamaGen: `gpt`, VAR: `model`), VQ excluded."""
    net = getattr(teacher, "gpt", None) or getattr(teacher, "model", None)
    if not isinstance(net, nn.Module) or not hasattr(teacher, "forward_logits_train"):
        raise ValueError(f"teacher {teacher.name} ({type(teacher).__name__}) does not expose "
                         "a trainable AR network (gpt / model and forward_logits_train): DD2 "
                         "needs one")
    return net


def noised(x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x_t = (1 - t) x0 + t eps; x0, eps (B, N, d), t (B,) or (B, N) -> (B, N, d)."""
    t = t.to(x0.dtype)
    t = t[:, None, None] if t.dim() == 1 else t[..., None]
    return (1 - t) * x0 + t * eps


def mixture_denoiser(x_t: Tensor, t: Tensor, probs: Tensor, codebook: Tensor) -> Tensor:
    """D(x_t, t) of each position's mixture: x_t (B, N, d), t (B,) or (B, N), probs (B, N, V),
    codebook (V, d) -> (B, N, d) (float32; differentiable in probs)."""
    tt = t[:, None].expand(x_t.shape[:2]) if t.dim() == 1 else t
    return denoiser(x_t.float(), tt.float(), probs.float(), codebook.float())


@torch.no_grad()
def teacher_denoiser(teacher: Teacher, tokens: Tensor, cond: Condition, x_t: Tensor, t: Tensor,
                     sampling: SamplingConfig | None = None) -> Tensor:
    """The teacher's exact conditional denoiser at noised tokens x_t (B, N, d) given the clean
    sequence `tokens` (B, N) as prefixes (teacher forcing: row i sees tokens < i, VAR: the
    scales before i's): -> (B, N, d). sampling: the teacher's distribution (default its own,
    CFG and filtering included: the distribution DD samples from)."""
    sampling = teacher.default_sampling if sampling is None else sampling
    probs = teacher.guided_probs(tokens, cond, sampling)
    return mixture_denoiser(x_t, t, probs, teacher.dd_codebook())


class ARDiffusion(nn.Module):
    """A trainable AR-diffusion model: a copy of `teacher` whose AR network is trained.

    `probs(tokens, cond)` (B, N, V): its per-position distributions by teacher forcing (unguided
    logits, temperature 1, no filtering); `denoise` / `score` at noised tokens follow from them
    in closed form (module docstring)."""

    def __init__(self, teacher: Teacher):
        super().__init__()
        self.teacher = copy.deepcopy(teacher)  # the frozen original stays untouched
        self.net = ar_network(self.teacher)
        self.net.requires_grad_(True)
        self.train()
        self.register_buffer("codebook", teacher.dd_codebook().detach().clone().float(),
                             persistent=False)

    def train(self, mode: bool = True) -> ARDiffusion:
        """The AR network always runs as at inference (eval mode): no dropout and no label
        dropout of the teacher's training, so that its distributions, and with them the
        scores, are exactly the teacher's at the start; gradients flow all the same."""
        super().train(mode)
        self.net.eval()
        return self

    @property
    def layout(self):
        return self.teacher.layout

    def logits(self, tokens: Tensor, cond: Condition) -> Tensor:
        """(B, N) int64 -> (B, N, V) float32 logits (with gradients)."""
        return self.teacher.forward_logits_train(tokens, cond)

    def probs(self, tokens: Tensor, cond: Condition) -> Tensor:
        return torch.softmax(self.logits(tokens, cond).float(), dim=-1)

    def denoise(self, x_t: Tensor, t: Tensor, tokens: Tensor, cond: Condition) -> Tensor:
        """D(x_t, t | tokens_<i) for every position: (B, N, d)."""
        return mixture_denoiser(x_t, t, self.probs(tokens, cond), self.codebook)

    def forward(self, x_t: Tensor, t: Tensor, tokens: Tensor, cond: Condition) -> Tensor:
        """`denoise` (the module call, so that DDP sees it)."""
        return self.denoise(x_t, t, tokens, cond)

    def score(self, x_t: Tensor, t: Tensor, tokens: Tensor, cond: Condition) -> Tensor:
        """-(x_t - (1 - t) D) / t^2 for every position: (B, N, d)."""
        tt = (t[:, None, None] if t.dim() == 1 else t[..., None]).to(x_t.dtype)
        return -(x_t - (1 - tt) * self.denoise(x_t, t, tokens, cond)) / (tt * tt)

    def as_teacher(self) -> Teacher:
        """The copy as a teacher object (its trained AR network, the original tokenizer): to
        initialise a student from, or to sample."""
        return self.teacher
