"""Computing samples: teacher + flow map, batch-invariant (method.md §2-3, docs/pairs.md).

A sample is (condition, noise for every position, tokens). Tokens come from the teacher's AR
loop where every step's sampling distribution is mapped from that position's noise by the flow
map. Batch invariance: floating-point results of a teacher forward depend on the shapes of the
pass (BLAS blocking, SDPA kernels) and on the CPU thread count, and one flipped near-tie token
changes the rest of a sequence. So every teacher pass runs exactly `micro_batch` samples, always
the same ones (samples [j*m, (j+1)*m)), with a fixed thread count; a batch of B samples is B/m
such sessions stepped in lockstep whose rows go through the flow map together (its rows are
computed in fixed-size blocks, independent of the batch around them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ardistill.core.captions import Captions
from ardistill.core.choosers import NoiseChooser, NoiseMap, build_noise_map
from ardistill.core.seeds import caption_rows, class_labels, noise_seeds, regenerate_noise
from ardistill.pairs.config import PairsSettings, check_classes, resolve_sampling
from ardistill.teachers.base import Chooser, Condition, SamplingConfig, Teacher
from ardistill.utils import dtypes
from ardistill.utils.threads import intra_op_threads


@torch.no_grad()
def decode_lockstep(
    teacher: Teacher,
    cond: Condition,
    sampling: SamplingConfig,
    choose: Chooser,
    micro_batch: int,
) -> Tensor:
    """`teachers.base.decode` for B = k * micro_batch samples as k sessions of micro_batch
    samples each, stepped together: `choose(step, probs)` sees the (B, step_size, V)
    distributions of all of them at once. Returns (B, N) int64 tokens (on the chooser's device).
    With k = 1 this is exactly `decode(teacher, cond, sampling, choose)`."""
    b = len(cond)
    if b % micro_batch:
        raise ValueError(f"{b} samples are not a multiple of micro_batch={micro_batch}")
    sessions = [teacher.start(cond[i : i + micro_batch], sampling)
                for i in range(0, b, micro_batch)]
    chunks = []
    for step in range(teacher.layout.num_steps):
        probs = torch.cat([s.next_probs() for s in sessions])
        tokens = choose(step, probs).long()
        for j, s in enumerate(sessions):
            s.push(tokens[j * micro_batch : (j + 1) * micro_batch])
        chunks.append(tokens)
    return torch.cat(chunks, dim=1)


@dataclass
class SampleBlock:
    """Consecutive samples. index, noise_seed, cond: (n,) int64 (cond: class label or caption
    row); tokens: (n, N) int64; noise: (n, N, d) float32 (all on the CPU)."""

    index: np.ndarray
    noise_seed: np.ndarray
    cond: np.ndarray
    tokens: Tensor
    noise: Tensor

    def head(self, n: int) -> SampleBlock:
        return SampleBlock(self.index[:n], self.noise_seed[:n], self.cond[:n], self.tokens[:n],
                           self.noise[:n])

    @staticmethod
    def cat(blocks: Sequence[SampleBlock]) -> SampleBlock:
        return SampleBlock(np.concatenate([b.index for b in blocks]),
                           np.concatenate([b.noise_seed for b in blocks]),
                           np.concatenate([b.cond for b in blocks]),
                           torch.cat([b.tokens for b in blocks]),
                           torch.cat([b.noise for b in blocks]))


class PairsJob:
    """Computes samples of one dataset: the teacher, its resolved sampling, the conditions and
    the flow map, on one device.

    captions: caption features (text-conditional teachers), else class labels are drawn.
    noise_map: the flow map (default: built from `settings.flow_steps`); a benchmark may pass a
        timed wrapper of it.
    """

    def __init__(self, teacher: Teacher, settings: PairsSettings, *,
                 captions: Captions | None = None, device: torch.device | str = "cpu",
                 noise_map: NoiseMap | None = None) -> None:
        self.teacher, self.settings = teacher, settings
        self.sampling = resolve_sampling(teacher, settings)
        self.device = torch.device(device)
        self.captions = captions
        self.classes: tuple[int, ...] = ()
        if captions is None:
            self.classes = check_classes(teacher, settings)
        elif teacher.num_classes:
            raise ValueError(f"{teacher.name} is class-conditional: caption features do not apply")
        elif settings.classes is not None:
            raise ValueError("classes apply to class-conditional teachers only")
        self.codebook = teacher.dd_codebook().to(self.device, torch.float32)
        self.noise_map = noise_map or build_noise_map(self.codebook, settings.flow_steps)

    @property
    def dtype(self) -> torch.dtype:
        return dtypes.resolve(self.settings.dtype)

    def conditions(self, index: np.ndarray) -> tuple[Condition, np.ndarray]:
        """(n,) int64 sample indices -> (Condition of n samples, (n,) stored condition column)."""
        if self.captions is None:
            labels = class_labels(self.settings.seed, index, self.classes)
            return Condition(labels=torch.from_numpy(labels)), labels
        rows = caption_rows(index, self.captions.rows)
        return self.captions.condition(rows), rows

    def compute(self, first: int, count: int) -> SampleBlock:
        """Samples [first, first + count); both multiples of micro_batch (whole micro-batches:
        the composition of every teacher pass is fixed by the sample indices)."""
        m = self.settings.micro_batch
        if first % m or count % m or count <= 0:
            raise ValueError(f"compute({first}, {count}): need whole micro-batches of {m}")
        index = np.arange(first, first + count, dtype=np.int64)
        seeds = noise_seeds(self.settings.seed, index)
        lay = self.teacher.layout
        noise = regenerate_noise(seeds, lay.num_positions, self.teacher.codebook_dim)
        cond, column = self.conditions(index)
        chooser = NoiseChooser(self.noise_map, noise.to(self.device), lay)
        with intra_op_threads(self.settings.threads):
            tokens = decode_lockstep(self.teacher, cond, self.sampling, chooser, m)
        return SampleBlock(index, seeds, column, tokens.to("cpu"), noise)
