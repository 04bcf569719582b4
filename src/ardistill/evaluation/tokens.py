"""The two download-free token metrics of `ardistill eval`, on token tensors.

- Token agreement with the teacher's flow map for the same noise: the reference tokens are the
  teacher + flow map's tokens from the SAME noise (`ardistill sample --method teacher
  --teacher-choice flow`, or a pairs dataset with the same seed: sample i's noise is the same).
  A DD student that reproduced the flow map exactly would score 1.0.
- Teacher NLL in bits per token, teacher forcing. The distribution is the teacher's guided
  distribution WITHOUT truncation: `softmax(guided logits / temperature)` with the teacher's
  CFG (and cfg ramp / interval), but top-k = 0 and top-p = 1, so that every token has a finite
  NLL (a DD student's continuous-head tokens may fall outside the teacher's top-k, which would
  give infinite bits and say nothing). Probabilities are floored at `PROB_FLOOR` (float32
  softmax underflow). The same measure of the teacher's own samples is the reference point:
  a sampler that draws exactly from the teacher's distribution scores the teacher's entropy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ardistill.core.pairs_dataset import PairsDataset
from ardistill.metrics import bits_per_token, token_agreement, token_agreement_per_position
from ardistill.teachers.base import Condition, SamplingConfig, Teacher

PROB_FLOOR = 1e-30  # ~100 bits: the most one token can cost


def nll_sampling(teacher: Teacher, sampling: SamplingConfig | None = None) -> SamplingConfig:
    """The teacher's sampling distribution with the truncation removed (module docstring)."""
    sampling = teacher.default_sampling if sampling is None else sampling
    return sampling.replace(top_k=0, top_p=1.0)


@torch.no_grad()
def teacher_log_probs(teacher: Teacher, tokens: Tensor, cond: Condition,
                      sampling: SamplingConfig | None = None, batch_size: int = 64) -> Tensor:
    """Teacher forcing: tokens (B, N) int64 -> (B, N) float64 natural-log probabilities under
    `nll_sampling(teacher, sampling)`, in batches of `batch_size`."""
    if tokens.dim() != 2 or tokens.shape[1] != teacher.layout.num_positions:
        raise ValueError(f"tokens must be (B, {teacher.layout.num_positions}), got "
                         f"{tuple(tokens.shape)}")
    if len(cond) != tokens.shape[0]:
        raise ValueError(f"{len(cond)} conditions for {tokens.shape[0]} token rows")
    s = nll_sampling(teacher, sampling)
    out = []
    for i in range(0, tokens.shape[0], batch_size):
        tok = tokens[i : i + batch_size].long()
        probs = teacher.guided_probs(tok, cond[i : i + batch_size], s)  # (b, N, V)
        p = probs.gather(-1, tok.to(probs.device)[..., None])[..., 0]
        out.append(p.double().clamp_min(PROB_FLOOR).log().cpu())
    return torch.cat(out)


def teacher_nll_bits(teacher: Teacher, tokens: Tensor, cond: Condition,
                     sampling: SamplingConfig | None = None, batch_size: int = 64) -> float:
    """Mean teacher NLL of `tokens` (B, N) int64 in bits per token (module docstring)."""
    return bits_per_token(teacher_log_probs(teacher, tokens, cond, sampling, batch_size))


def agreement_report(tokens: Tensor, reference: Tensor, layout_step_sizes: tuple[int, ...]
                     ) -> dict:
    """Token agreement of (B, N) tokens with the reference (B, N): overall, and over the
    positions of each quarter of the AR steps (where along the sequence the sampler drifts)."""
    per_pos = token_agreement_per_position(tokens.cpu(), reference.cpu())
    bounds = [0]
    for size in layout_step_sizes:
        bounds.append(bounds[-1] + size)
    s = len(layout_step_sizes)
    quarters = []
    for q in range(4):
        lo, hi = bounds[q * s // 4], bounds[(q + 1) * s // 4]
        quarters.append(float(per_pos[lo:hi].mean()) if hi > lo else math.nan)
    return {"token_agreement": token_agreement(tokens.cpu(), reference.cpu()),
            "token_agreement_by_quarter": quarters}


@dataclass
class TokenSet:
    """Tokens of a set of samples: tokens (M, N) int64, labels (M,) int64, index (M,) int64
    (sample indices: with the same seed, equal indices mean equal noise); seed when known."""

    tokens: Tensor
    labels: Tensor
    index: Tensor
    seed: int | None = None
    source: str = ""


def read_tokens(path: str | Path) -> TokenSet:
    """A run folder of `ardistill sample` (or its tokens.npz / samples.npz) or a pairs
    dataset folder -> TokenSet."""
    path = Path(path)
    if path.is_dir() and (path / "manifest.json").is_file():
        ds = PairsDataset(path)
        cols = ds.read(np.arange(len(ds)))
        seed = int(ds.identity["generation"]["seed"])
        return TokenSet(torch.from_numpy(cols["tokens"]), torch.from_numpy(cols["cond"]),
                        torch.from_numpy(cols["index"]), seed, str(path))
    run = path if path.is_dir() else path.parent
    tok = path if path.name == "tokens.npz" else run / "tokens.npz"
    if not tok.is_file():
        raise FileNotFoundError(f"no tokens.npz for {path} (expected {tok}, written by "
                                "`ardistill sample`)")
    with np.load(tok, allow_pickle=False) as f:
        ts = TokenSet(torch.from_numpy(f["tokens"].astype(np.int64)),
                      torch.from_numpy(f["labels"].astype(np.int64)),
                      torch.from_numpy(f["index"].astype(np.int64)), source=str(tok))
    meta = run / "sample.json"
    if meta.is_file():
        ts.seed = int(json.loads(meta.read_text())["settings"]["seed"])
    return ts


def align(samples: TokenSet, reference: TokenSet) -> tuple[Tensor, Tensor]:
    """(sample tokens, reference tokens) of the indices both hold; the seeds must agree
    (same noise) and so must the labels (same condition)."""
    if None not in (samples.seed, reference.seed) and samples.seed != reference.seed:
        raise ValueError(f"seeds differ ({samples.source}: {samples.seed}, {reference.source}: "
                         f"{reference.seed}): different noise, agreement is meaningless")
    pos = {int(i): k for k, i in enumerate(reference.index.tolist())}
    rows = [(k, pos[int(i)]) for k, i in enumerate(samples.index.tolist()) if int(i) in pos]
    if not rows:
        raise ValueError(f"{reference.source} holds none of the sample indices")
    a = torch.tensor([r[0] for r in rows])
    b = torch.tensor([r[1] for r in rows])
    if not torch.equal(samples.labels[a], reference.labels[b]):
        raise ValueError(f"labels differ from {reference.source} for the same indices (sample "
                         "with the same --classes mode; pairs datasets use --classes random)")
    return samples.tokens[a], reference.tokens[b]


def token_metrics(teacher: Teacher, samples: TokenSet, *, flow_reference: TokenSet | None = None,
                  teacher_samples: TokenSet | None = None, batch_size: int = 64) -> dict:
    """{"teacher_nll_bits", "teacher_samples_nll_bits", "token_agreement",
    "token_agreement_by_quarter", "num_token_samples"} (None where no input was given)."""
    device = teacher.dd_codebook().device

    def nll(ts: TokenSet) -> float:
        cond = Condition(labels=ts.labels.to(device))
        return teacher_nll_bits(teacher, ts.tokens.to(device), cond, batch_size=batch_size)

    out = {"num_token_samples": int(samples.tokens.shape[0]),
           "teacher_nll_bits": nll(samples), "teacher_samples_nll_bits": None,
           "token_agreement": None, "token_agreement_by_quarter": None}
    if teacher_samples is not None:
        out["teacher_samples_nll_bits"] = nll(teacher_samples)
    if flow_reference is not None:
        a, b = align(samples, flow_reference)
        out.update(agreement_report(a, b, teacher.layout.step_sizes))
    return out
