"""Everything a run needs before its first step: teacher, data, timesteps, student, optimizer,
EMA, and the state of a run being resumed (training/loop.py runs the steps)."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ardistill.core.pairs_dataset import PairsDataset
from ardistill.errors import CheckpointError
from ardistill.student.files import load_student_file
from ardistill.student.registry import build_student
from ardistill.teachers.base import Teacher, TokenLayout
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.training.config import OptimConfig, TrainConfig
from ardistill.training.data import StepSampler
from ardistill.training.dist import TrainDist
from ardistill.training.ema import EMA
from ardistill.training.perceptual import PerceptualLoss
from ardistill.training.state import list_checkpoints, load_checkpoint, set_rng_state


@dataclass(frozen=True)
class Schedule:
    """t_list: training timesteps; split: logits-head steps; t2_eval: the second timestep of
    the 2-step evaluation (None: no 2-step evaluation)."""

    t_list: tuple[int, ...]
    split: int
    t2_eval: int | None


def dd_defaults(teacher: Teacher):
    """The teacher preset's released DDDefaults, or None for a teacher of no preset."""
    preset = all_presets().get(teacher.name)
    return None if preset is None else preset.dd


def resolve_schedule(cfg: TrainConfig, teacher: Teacher) -> Schedule:
    dd = dd_defaults(teacher)
    n_steps = teacher.layout.num_steps
    if cfg.timesteps is not None:
        t_list = tuple(int(t) for t in cfg.timesteps)
    elif cfg.two_step:
        if dd is None:
            raise ValueError(f"teacher {teacher.name!r} has no preset DD defaults: give the "
                             "timesteps (e.g. --timesteps 0,T2)")
        t_list = (0, dd.t2)
    else:
        t_list = (0,)
    split = cfg.split if cfg.split is not None else (dd.split if dd is not None else None)
    if split is None:
        raise ValueError(f"teacher {teacher.name!r} has no preset DD defaults: give --split")
    if t_list[-1] >= n_steps or not 0 <= split <= n_steps:
        raise ValueError(f"timesteps {t_list} must be < {n_steps} and split {split} in "
                         f"[0, {n_steps}] (AR steps of {teacher.name})")
    t2 = t_list[1] if len(t_list) > 1 else (dd.t2 if dd is not None else None)
    return Schedule(t_list, int(split), None if t2 is None or t2 >= n_steps else int(t2))


def resolve_teacher(cfg: TrainConfig, ds: PairsDataset, teacher: Teacher | None,
                    device: torch.device) -> Teacher:
    """The given teacher, or the one the pairs manifest names; its fingerprint must be the
    dataset's."""
    if teacher is None:
        spec = cfg.teacher or ds.identity["teacher"]["spec"]
        teacher = load_teacher(spec, tokenizer_ckpt=cfg.tokenizer_ckpt, device=device)
    if teacher.fingerprint() != ds.teacher_fingerprint:
        rec = ds.identity["teacher"]
        raise ValueError(f"{ds.root} was made by teacher {rec['name']} (fingerprint "
                         f"{rec['fingerprint'][:12]}), not by {teacher.name} "
                         f"({teacher.fingerprint()[:12]})")
    return teacher


def lr_factor(step: int, opt: OptimConfig, total: int) -> float:
    """Multiplier of the base lr after `step` scheduler steps: linear warmup, then cosine to
    min_lr_ratio at `total` (or constant)."""
    if opt.warmup_steps and step < opt.warmup_steps:
        return (step + 1) / opt.warmup_steps
    if opt.schedule == "constant":
        return 1.0
    span = max(1, total - opt.warmup_steps)
    frac = min(1.0, (step - opt.warmup_steps) / span)
    return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


@dataclass
class RunState:
    """The objects of a run. `start`: completed steps (0, or the resumed checkpoint's)."""

    cfg: TrainConfig
    teacher: Teacher
    train: PairsDataset
    held: PairsDataset
    layout: TokenLayout
    codebook: Tensor
    schedule: Schedule
    student: nn.Module
    model: nn.Module  # the student, wrapped in DDP when world_size > 1
    ema: EMA
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    sampler: StepSampler
    dist: TrainDist
    device: torch.device
    perceptual: PerceptualLoss | None
    identity: dict  # run_identity: stored in every checkpoint
    start: int
    resumed_from: Path | None


def build_optimizer(student: nn.Module, cfg: TrainConfig):
    o = cfg.optim
    opt = torch.optim.AdamW(student.parameters(), lr=o.lr, betas=o.betas, eps=o.eps,
                            weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, o, cfg.steps))
    return opt, sched


def setup_run(cfg: TrainConfig, teacher: Teacher | None, dist: TrainDist) -> RunState:
    device = torch.device("cuda", dist.local_rank) if cfg.device == "cuda" else torch.device("cpu")
    ds = PairsDataset(cfg.pairs)
    if cfg.holdout >= len(ds):
        raise ValueError(f"{cfg.pairs} holds {len(ds)} pairs: a holdout of {cfg.holdout} "
                         "leaves none to train on; lower --holdout (or generate more pairs)")
    train_ds, held = ds.split_holdout(cfg.holdout)
    teacher = resolve_teacher(cfg, ds, teacher, device)
    schedule = resolve_schedule(cfg, teacher)
    student = build_student(teacher, generator=torch.Generator().manual_seed(cfg.seed),
                            device=device, dtype=torch.float32).train()
    if cfg.init_student and latest_good_checkpoint(cfg.out) is None:
        init, _ = load_student_file(teacher, cfg.init_student, device=device,
                                    dtype=torch.float32)
        student.load_state_dict(init.state_dict())
    ema = EMA(student, cfg.ema_decay, cfg.ema_warmup)
    opt, sched = build_optimizer(student, cfg)
    start, resumed = _resume(cfg, teacher, schedule, student, ema, opt, sched, device)
    model: nn.Module = student
    if dist.world_size > 1:
        # a head with weight 0 gets no gradient: DDP must then look for unused parameters
        unused = cfg.loss.ce == 0 or (cfg.loss.latent == 0 and not cfg.loss.uses_perceptual)
        model = nn.parallel.DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused)
    sampler = StepSampler(len(train_ds), cfg.batch_size, schedule.t_list, cfg.seed,
                          dist.rank, dist.world_size)
    perceptual = PerceptualLoss(cfg.loss, device) if cfg.loss.uses_perceptual else None
    return RunState(cfg, teacher, train_ds, held, ds.layout,
                    teacher.dd_codebook().to(device, torch.float32), schedule, student, model,
                    ema, opt, sched, sampler, dist, device, perceptual,
                    run_identity(cfg, ds.teacher_fingerprint, schedule), start, resumed)


def run_identity(cfg: TrainConfig, teacher_fp: str, schedule: Schedule) -> dict:
    """What must not change when a run is resumed (teacher_fp: the teacher's fingerprint)."""
    return {"teacher_fingerprint": teacher_fp, "t_list": list(schedule.t_list),
            "split": schedule.split, "seed": cfg.seed, "batch_size": cfg.batch_size,
            "loss": json.loads(json.dumps(cfg.to_json()["loss"]))}


def latest_good_checkpoint(run: str | Path) -> tuple[int, Path, dict] | None:
    """(step, path, payload) of the newest checkpoint whose bytes match their recorded sha256;
    a corrupt newer one is named on stderr and skipped. None when RUN has no checkpoint;
    CheckpointError when it has some and none is intact."""
    ckpts = list_checkpoints(run)
    bad = []
    for step, path in reversed(ckpts):
        try:
            ck = load_checkpoint(path)
        except CheckpointError as e:
            bad.append(str(e))
            continue
        for reason in bad:
            print(f"ardistill: {reason}; resuming from the previous checkpoint, {path.name}",
                  file=sys.stderr)
        return step, path, ck
    if bad:
        raise CheckpointError(f"{run}: no intact checkpoint to resume from: " + "; ".join(bad))
    return None


def _resume(cfg, teacher, schedule, student, ema, opt, sched, device):
    found = latest_good_checkpoint(cfg.out)
    if found is None:
        return 0, None
    step, path, ck = found
    if step > cfg.steps:
        raise ValueError(f"{cfg.out} has trained {step} steps, more than --steps {cfg.steps}; "
                         f"give --steps >= {step} to continue it, or another --out")
    want = run_identity(cfg, teacher.fingerprint(), schedule)
    diff = [k for k in want if ck.get("identity", {}).get(k) != want[k]]
    if diff:
        raise ValueError(f"{cfg.out} holds a run with other settings ({', '.join(diff)} "
                         "differ); use another --out or the recorded settings")
    student.load_state_dict(ck["model"])
    ema.load_state_dict(ck["ema"])
    opt.load_state_dict(ck["optim"])
    sched.load_state_dict(ck["sched"])
    # The lr is a function of the step and of the CURRENT total steps (a resumed run may be
    # extended): recompute it rather than keep the saved one.
    lrs = [base * lr_factor(sched.last_epoch, cfg.optim, cfg.steps) for base in sched.base_lrs]
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    sched._last_lr = lrs
    set_rng_state(ck["rng"], device)
    return int(ck["step"]), path
