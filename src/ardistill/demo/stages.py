"""The demo's stages for one teacher, each a call into the room that owns the capability.

1. `make_pairs`: the training set (seed s) and the evaluation set (seed s + 1) through
   `ardistill.pairs.generate_pairs` (teacher + flow map, method.md §2-3);
2. `train_students`: a 1-step and a 2-step student through `ardistill.training.train`;
3. `sample_methods`: every method on the evaluation set's noise and labels through
   `ardistill.sampling.run.sample_with` (the teacher row is the evaluation set itself: its
   flow-mapped tokens are exact samples of the teacher's distribution for that noise);
4. `evaluate_methods`: FID on the shipped MNIST features against the held-out MNIST split,
   token agreement with the flow-mapped teacher, teacher NLL in bits per token;
5. `bench_methods`: time per image at batch 1 (VQ decoding included), median after warm-up.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ardistill.demo.config import DemoConfig, StudentSettings
from ardistill.errors import CheckpointError
from ardistill.evaluation.images import evaluate_images
from ardistill.evaluation.tokens import TokenSet, read_tokens, token_metrics
from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.run import generate_pairs
from ardistill.sampling.run import Sampler, SampleResult, prepare, sample_with
from ardistill.sampling.spec import (
    DD2Method,
    DDMethod,
    Models,
    OneStepMethod,
    SampleConfig,
    SkipMethod,
    TeacherMethod,
)
from ardistill.student.files import load_student_file, load_trained_student
from ardistill.teachers.base import Teacher
from ardistill.training import train
from ardistill.training.config import LossConfig, OptimConfig, recipe
from ardistill.utils.images import to_uint8
from ardistill.weights import student_file

# Pairs are computed in teacher passes of this many samples (batch-invariant generation).
PAIRS_MICRO_BATCH = 64


@dataclass
class Method:
    """One row of the report: `method` is "teacher", "dd", "onestep*" or "skip-k"; `key` a
    unique name ("dd-1", "skip-26"); `steps` network passes per image."""

    key: str
    method: str
    steps: int
    config: SampleConfig | None = None  # None: the evaluation pairs (teacher row)
    sampler: Sampler | None = None


@dataclass
class TeacherWork:
    """Folders of one teacher's run under `out/<preset>/`."""

    root: Path
    pairs_train: Path = field(init=False)
    pairs_eval: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pairs_train = self.root / "pairs-train"
        self.pairs_eval = self.root / "pairs-eval"

    def run(self, steps: int) -> Path:
        return self.root / f"student-{steps}step"


def pairs_settings(cfg: DemoConfig, num: int, seed: int) -> PairsSettings:
    mb = PAIRS_MICRO_BATCH
    shard = -(-num // mb) * mb  # one shard, a whole number of micro-batches
    return PairsSettings(num=num, seed=seed, shard_size=shard, micro_batch=mb,
                         threads=cfg.threads)


def make_pairs(teacher: Teacher, cfg: DemoConfig, work: TeacherWork, spec: str) -> dict:
    """Both pairs datasets (resumed when already complete with the same settings)."""
    opts = GenOptions(batch_size=256 if cfg.pairs >= 256 else PAIRS_MICRO_BATCH,
                      progress=cfg.progress)
    rep = {}
    for name, path, num, seed in (("train", work.pairs_train, cfg.pairs, cfg.seed),
                                  ("eval", work.pairs_eval, cfg.eval_samples, cfg.seed + 1)):
        r = generate_pairs(teacher, pairs_settings(cfg, num, seed), path, options=opts,
                           spec=spec)
        rep[name] = {"num": num, "seed": seed, "seconds": round(r.seconds, 2),
                     "pairs_per_second": round(r.pairs_per_second, 2)}
    return rep


def train_config(s: StudentSettings, cfg: DemoConfig, work: TeacherWork, two_step: bool):
    steps = 2 if two_step else 1
    return recipe(
        "tiny-2step" if two_step else "tiny-1step", pairs=str(work.pairs_train),
        out=str(work.run(steps)), steps=s.steps, batch_size=s.batch_size,
        holdout=min(64, cfg.pairs // 4), eval_every=0, eval_samples=min(64, cfg.pairs // 4),
        ckpt_every=0, keep_last=1, ema_decay=s.ema_decay, seed=cfg.seed,
        progress=cfg.progress,
        loss=LossConfig(ce=s.ce, latent=s.latent, perceptual=s.perceptual,
                        perceptual_weight=s.perceptual_weight),
        optim=OptimConfig(lr=s.lr, warmup_steps=s.warmup, schedule="cosine"))


def sample_split(teacher: Teacher, cfg: DemoConfig, trained_split: int) -> int:
    """The DD sampling split (AR steps decided by the logits head) for `cfg.split`."""
    return teacher.layout.num_steps if cfg.split == "logits" else int(trained_split)


def train_students(teacher: Teacher, cfg: DemoConfig, work: TeacherWork) -> dict:
    """{1: (TrainedStudent, record), 2: (...)}: the EMA students, loaded from their exports."""
    out = {}
    for steps, s in ((1, cfg.one_step), (2, cfg.two_step)):
        res = train(train_config(s, cfg, work, steps == 2), teacher=teacher)
        ts = load_trained_student(res.export, teacher=teacher)
        out[steps] = (ts, {"steps": res.steps, "seconds": round(res.seconds, 2),
                           "samples_per_second": round(res.samples_per_second, 1),
                           "final_loss": res.losses[-1] if res.losses else None,
                           "eval": res.last_eval, "export": str(res.export),
                           "t_list": list(ts.t_list), "split": ts.split,
                           "sample_split": sample_split(teacher, cfg, ts.split)})
    return out


def methods_of(teacher: Teacher, cfg: DemoConfig, work: TeacherWork, spec: str,
               students: dict) -> list[Method]:
    """The report's rows for one teacher, in Table-1 order."""
    base = SampleConfig(Models(spec), num=cfg.eval_samples, batch_size=cfg.sample_batch,
                        seed=cfg.seed + 1, classes="random", pngs=False)
    s_total = teacher.layout.num_steps

    def row(key: str, method: str, steps: int, spec_, student=None, hints=None) -> Method:
        c = replace(base, method=spec_)
        return Method(key, method, steps, c, prepare(c, teacher, student, hints))

    rows = [Method("teacher", "teacher", s_total)]
    for steps in (1, 2):
        ts, rec = students[steps]
        rows.append(row(f"dd-{steps}", "dd", steps,
                        DDMethod(t_list=tuple(ts.t_list), split=rec["sample_split"]), ts.student))
    shipped_dd2 = _shipped_dd2(teacher, spec)
    if shipped_dd2 is not None:  # DD2 is not trained by the demo: its shipped student, with
        # the token choice its file records (what `sample --method dd2` gives)
        rows.append(row("dd2-shipped", "dd2", 1, DD2Method(), *shipped_dd2))
    rows.append(row("onestep*", "onestep*", 1,
                    OneStepMethod(cfg.choice, marginals=str(work.pairs_train))))
    k = cfg.skip_k(teacher.family)
    rows.append(row(f"skip-{k}", "skip-k", s_total - k, SkipMethod(k, cfg.choice)))
    return rows


def _shipped_dd2(teacher: Teacher, spec: str):
    """(student, hints) of the preset's shipped DD2 student (`ardistill.weights`), or None
    when none ships."""
    try:
        path = student_file(spec, 1, "dd2")
    except CheckpointError:
        return None
    return load_student_file(teacher, path)


@dataclass
class Samples:
    """A method's evaluation samples: tokens (M, N) int64, labels (M,) int64, images (M, 3,
    H, W) uint8, parameters of the generating network."""

    tokens: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor
    parameters: int


@torch.no_grad()
def eval_pairs_samples(teacher: Teacher, work: TeacherWork, batch: int) -> Samples:
    """The teacher row: the evaluation set's flow-mapped tokens, decoded."""
    ref = read_tokens(work.pairs_eval)
    device = teacher.dd_codebook().device
    imgs = [to_uint8(teacher.decode_tokens(ref.tokens[i : i + batch].to(device)).float().cpu())
            for i in range(0, len(ref.tokens), batch)]
    net = getattr(teacher, "gpt", None) or getattr(teacher, "model", None)
    params = sum(p.numel() for p in net.parameters()) if isinstance(net, torch.nn.Module) else 0
    return Samples(ref.tokens, ref.labels, torch.cat(imgs), params)


def sample_methods(teacher: Teacher, methods: list[Method], work: TeacherWork,
                   cfg: DemoConfig) -> dict[str, Samples]:
    out = {}
    for m in methods:
        if m.config is None:
            out[m.key] = eval_pairs_samples(teacher, work, cfg.sample_batch)
            continue
        r: SampleResult = sample_with(teacher, m.sampler, m.config)
        out[m.key] = Samples(r.tokens, r.labels, r.images, int(r.settings["parameters"]))
    return out


def evaluate_methods(teacher: Teacher, samples: dict[str, Samples], work: TeacherWork,
                     cfg: DemoConfig, reference, extractor) -> dict[str, dict]:
    """Per method: FID (vs the held-out MNIST split), token agreement with the flow-mapped
    teacher of the same noise, teacher NLL (bits per token)."""
    flow_ref = read_tokens(work.pairs_eval)
    out = {}
    for key, s in samples.items():
        img = evaluate_images(s.images, reference, extractor, batch_size=cfg.sample_batch)
        ts = TokenSet(s.tokens, s.labels, torch.arange(len(s.tokens)), cfg.seed + 1, key)
        tok = token_metrics(teacher, ts, flow_reference=flow_ref, batch_size=cfg.sample_batch)
        out[key] = {"fid": img["fid"], "inception_score": img["inception_score"],
                    "precision": img["precision"], "recall": img["recall"],
                    "agreement": tok["token_agreement"], "nll": tok["teacher_nll_bits"],
                    "num_samples": int(img["num_samples"])}
    return out


def bench_methods(teacher: Teacher, methods: list[Method], cfg: DemoConfig) -> dict[str, dict]:
    """Seconds per image at batch 1 (generation + VQ decoding), median of `bench_repeats`
    after `bench_warmup` runs. The teacher row times ordinary multinomial sampling."""
    out = {}
    for m in methods:
        c = m.config if m.config is not None else SampleConfig(
            Models(teacher.name), TeacherMethod("multinomial"))
        c = replace(c, num=1, batch_size=1, seed=cfg.seed + 2)
        sampler = m.sampler if m.sampler is not None else prepare(c, teacher, None)
        times = []
        for i in range(cfg.bench_warmup + cfg.bench_repeats):
            r = sample_with(teacher, sampler, replace(c, seed=cfg.seed + 2 + i))
            if i >= cfg.bench_warmup:
                times.append(r.seconds_generate + r.seconds_decode)
        out[m.key] = {"seconds_per_image": statistics.median(times),
                      "seconds_min": min(times), "repeats": len(times)}
    return out


def class_rows(images: torch.Tensor, labels: torch.Tensor, per_class: int,
               num_classes: int) -> torch.Tensor:
    """(num_classes * per_class, 3, H, W) uint8: row c holds the first `per_class` images of
    class c (black tiles where a class has fewer)."""
    rows = []
    blank = torch.zeros_like(images[:1])
    for c in range(num_classes):
        idx = np.flatnonzero(labels.numpy() == c)[:per_class]
        tiles = [images[int(i) : int(i) + 1] for i in idx]
        tiles += [blank] * (per_class - len(tiles))
        rows.append(torch.cat(tiles))
    return torch.cat(rows)
