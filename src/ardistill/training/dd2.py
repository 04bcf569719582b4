"""DD2 training (method.md §10): a one-step generator by conditional score distillation.

    cfg = dd2_recipe("mnist-dd2", teacher="mnist-llamagen", out="runs/dd2-ml")
    res = train_dd2(cfg)                     # RUN/student.safetensors: a 1-step student

One step counter runs through three stages (so checkpoints and resume cover all of them):

1. steps [0, regress_steps): the AR-diffusion model (`student.ardiffusion.ARDiffusion`, a copy
   of the teacher) regresses the teacher's exact conditional score on teacher sequences (fresh
   multinomial teacher samples, or the tokens of a pairs dataset with `pairs`);
2. [regress_steps, + guidance_warmup): it becomes the guidance network, trained by denoising
   score matching on the generator's samples (the generator is not updated yet);
3. the next `steps`: alternating, `guidance_per_step` guidance updates then one generator
   update along the score difference (`training.dd2_steps`); with `pairs_weight` > 0 the
   generator's loss also takes DD1's cross-entropy on a batch of `pairs` (an anchor against
   mode seeking, the regression term of distribution matching distillation).

The generator is a DD student read at t = 0 (noise in, logits for every position out), started
from `init_student` (default: the preset's shipped DD1 1-step student; otherwise one built
from the AR-diffusion model's weights) and exported with the DD1 student format (t_list (0,),
the logits head everywhere). Every random draw of step s comes from a generator seeded by
(seed, s), so a resumed run repeats the loss trace bit for bit; EMA of the generator, NaN /
inf stop, checkpoints with checksums, the run folder's lock, DDP under torchrun, TensorBoard
and a progress bar work as in DD1 training (`training.loop`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ardistill.core.choosers import RowMultinomialChooser, dd_flow_choice
from ardistill.core.pairs_dataset import PairsBatch, PairsDataset
from ardistill.core.seeds import choice_seeds, sample_labels
from ardistill.student.ardiffusion import ARDiffusion
from ardistill.student.files import export_student, load_student_file
from ardistill.student.llamagen.model import LlamaGenStudent, LlamaGenStudentConfig
from ardistill.student.registry import build_student
from ardistill.student.var.model import VARStudent, VARStudentConfig
from ardistill.teachers.base import Condition, Teacher, decode
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.teachers.var.model import VAR
from ardistill.training import dd2_steps as S
from ardistill.training.dist import TrainDist, dist_from_env
from ardistill.training.ema import EMA
from ardistill.training.logs import RunLogger
from ardistill.training.setup import latest_good_checkpoint
from ardistill.training.state import (
    diverged,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ardistill.utils.locks import check_output_path, output_folder
from ardistill.weights import student_file

EXPORT_NAME = "student.safetensors"
_DRAW_SALT = 0xDD2
_PAIRS_SALT = 0xDD1


@dataclass(frozen=True)
class DD2Config:
    """One DD2 run. Steps are optimizer updates of the stage they belong to (module docstring);
    lr_* are AdamW learning rates (constant after a linear warm-up of `warmup` steps)."""

    teacher: str = ""
    out: str = ""
    tokenizer_ckpt: str | None = None
    init_student: str | None = None
    pairs: str | None = None
    pairs_weight: float = 0.0
    dd_choice: str = "argmax"
    regress_steps: int = 200
    guidance_warmup: int = 100
    steps: int = 1000
    guidance_per_step: int = 1
    batch_size: int = 32
    lr_gen: float = 1e-5
    lr_guidance: float = 1e-4
    warmup: int = 20
    t_min: float = 0.02
    t_max: float = 0.98
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    eval_every: int = 0
    eval_samples: int = 64
    ckpt_every: int = 0
    keep_last: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    tensorboard: bool = False
    fault_nan_step: int | None = None
    stop_at: int | None = None

    def __post_init__(self) -> None:
        if min(self.regress_steps, self.guidance_warmup) < 0 or self.steps < 1:
            raise ValueError("regress_steps, guidance_warmup >= 0 and steps >= 1 needed")
        if self.batch_size < 1 or self.guidance_per_step < 1:
            raise ValueError("batch_size and guidance_per_step must be >= 1")
        if not 0.0 < self.t_min < self.t_max < 1.0:
            raise ValueError(f"need 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.pairs_weight < 0 or (self.pairs_weight > 0 and not self.pairs):
            raise ValueError(f"pairs_weight must be >= 0 and needs pairs, got "
                             f"{self.pairs_weight} with pairs={self.pairs!r}")
        if self.dd_choice not in ("argmax", "flow"):
            raise ValueError(f"dd_choice must be argmax or flow, got {self.dd_choice!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")

    @property
    def total_steps(self) -> int:
        return self.regress_steps + self.guidance_warmup + self.steps

    def stage(self, step: int) -> str:
        """"regress", "warmup" or "alternate" for the 0-based global step."""
        if step < self.regress_steps:
            return "regress"
        return "warmup" if step < self.regress_steps + self.guidance_warmup else "alternate"

    def replace(self, **kw) -> DD2Config:
        return replace(self, **kw)

    def to_json(self) -> dict:
        return asdict(self)


DD2_RECIPES = {
    # the embedded teachers on a CPU: minutes per stage (docs/fidelity.md)
    "mnist-dd2": lambda: DD2Config(regress_steps=200, guidance_warmup=100, steps=1500,
                                   batch_size=32, eval_every=250, ckpt_every=250),
    # the tests' golden and resume runs
    "dd2-debug": lambda: DD2Config(regress_steps=2, guidance_warmup=2, steps=4, batch_size=4,
                                   eval_samples=4, log_every=1, progress=False, warmup=1),
    # full-size presets: a starting point (the paper trains for GPU-days); not run here
    "dd2-full": lambda: DD2Config(regress_steps=5000, guidance_warmup=2000, steps=100_000,
                                  batch_size=256, lr_gen=1e-6, lr_guidance=1e-5, warmup=500,
                                  eval_every=5000, eval_samples=256, ckpt_every=2000,
                                  keep_last=3, device="cuda", log_every=50),
}


def dd2_recipe(name: str, **overrides) -> DD2Config:
    if name not in DD2_RECIPES:
        raise KeyError(f"unknown DD2 recipe {name!r}; known: {', '.join(sorted(DD2_RECIPES))}")
    return replace(DD2_RECIPES[name](), **overrides)


def dd2_sizes(preset_name: str) -> dict[str, int]:
    """Parameter counts of the DD2 networks of a teacher preset, built on the meta device (no
    weights, no memory): the generator (the family's DD student) and the guidance network (a
    copy of the teacher's AR network). Full-size presets build the same way."""
    preset = all_presets()[preset_name]
    with torch.device("meta"):
        if preset.family == "llamagen":
            gen = LlamaGenStudent(LlamaGenStudentConfig.from_teacher(
                preset.model_config, preset.tokenizer_config.codebook_embed_dim))
            guidance = GPT(preset.model_config)
        else:
            gen = VARStudent(VARStudentConfig(preset.model_config))
            guidance = VAR(preset.model_config)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"generator": count(gen), "guidance": count(guidance)}


@dataclass
class DD2Result:
    run: Path
    steps: int
    start: int
    losses: list
    evals: list
    export: Path | None
    seconds: float


# ---------------------------------------------------------------------------------- setup


@dataclass
class DD2State:
    cfg: DD2Config
    teacher: Teacher
    fake: ARDiffusion
    gen: nn.Module
    gen_model: nn.Module  # gen, in DDP when world_size > 1
    fake_model: nn.Module
    ema: EMA
    opt_gen: torch.optim.Optimizer
    opt_fake: torch.optim.Optimizer
    codebook: torch.Tensor
    dist: TrainDist
    device: torch.device
    pairs: PairsDataset | None
    start: int
    choose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # cfg.dd_choice


def _init_generator(cfg: DD2Config, teacher: Teacher, fake: ARDiffusion,
                    device: torch.device) -> nn.Module:
    path = cfg.init_student
    preset = all_presets().get(cfg.teacher)
    if path is None and preset is not None and preset.embedded:
        path = student_file(cfg.teacher, 1, "dd1")
    if path is None:  # from the AR-diffusion model's weights (the teacher's, after stage 1)
        return build_student(fake.as_teacher(), generator=torch.Generator().manual_seed(
            cfg.seed), device=device, dtype=torch.float32)
    student, _ = load_student_file(teacher, path, device=device, dtype=torch.float32)
    return student


def setup(cfg: DD2Config, dist: TrainDist) -> DD2State:
    device = torch.device("cuda", dist.local_rank) if cfg.device == "cuda" else torch.device("cpu")
    teacher = load_teacher(cfg.teacher, tokenizer_ckpt=cfg.tokenizer_ckpt, device=device)
    if teacher.num_classes == 0:
        raise ValueError(f"{teacher.name} is text-conditional: DD2 training here is for "
                         "class-conditional teachers")
    fake = ARDiffusion(teacher).to(device)
    gen = _init_generator(cfg, teacher, fake, device).float().train()
    gen.requires_grad_(True)
    ema = EMA(gen, cfg.ema_decay)
    pairs = PairsDataset(cfg.pairs) if cfg.pairs else None
    if pairs is not None and pairs.teacher_fingerprint != teacher.fingerprint():
        raise ValueError(f"{cfg.pairs}: pairs of another teacher than {teacher.name}")
    gen_model, fake_model = gen, fake
    if dist.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        gen_model = nn.parallel.DistributedDataParallel(gen, device_ids=ids,
                                                        find_unused_parameters=True)
        fake_model = nn.parallel.DistributedDataParallel(fake, device_ids=ids)
    opt_gen = torch.optim.AdamW(gen.parameters(), lr=cfg.lr_gen, betas=(0.0, 0.99))
    opt_fake = torch.optim.AdamW(fake.parameters(), lr=cfg.lr_guidance, betas=(0.0, 0.99))
    codebook = teacher.dd_codebook().to(device, torch.float32)
    choose = dd_flow_choice(codebook) if cfg.dd_choice == "flow" else None
    return DD2State(cfg, teacher, fake, gen, gen_model, fake_model, ema, opt_gen, opt_fake,
                    codebook, dist, device, pairs, 0, choose)


def _identity(cfg: DD2Config, teacher: Teacher) -> dict:
    keep = ("regress_steps", "guidance_warmup", "guidance_per_step", "batch_size", "lr_gen",
            "lr_guidance", "t_min", "t_max", "seed", "init_student", "pairs", "pairs_weight",
            "dd_choice")
    return {"teacher_fingerprint": teacher.fingerprint(),
            **{k: getattr(cfg, k) for k in keep}}


# identity fields added after runs were made, with the value those runs had
_LATER_FIELDS = {"pairs_weight": 0.0, "dd_choice": "argmax"}


def _resume(r: DD2State) -> tuple[int, Path | None]:
    found = latest_good_checkpoint(r.cfg.out)
    if found is None:
        return 0, None
    step, path, ck = found
    if step > r.cfg.total_steps:
        raise ValueError(f"{r.cfg.out} has done {step} steps, more than this config's "
                         f"{r.cfg.total_steps}")
    want = _identity(r.cfg, r.teacher)
    have = {**_LATER_FIELDS, **ck.get("identity", {})}  # runs from before a field existed
    diff = [k for k in want if have.get(k) != want[k]]
    if diff:
        raise ValueError(f"{r.cfg.out} holds a DD2 run with other settings ({', '.join(diff)} "
                         "differ); use another --out or the recorded settings")
    r.gen.load_state_dict(ck["model"])
    r.fake.load_state_dict(ck["guidance"])
    r.ema.load_state_dict(ck["ema"])
    r.opt_gen.load_state_dict(ck["optim"])
    r.opt_fake.load_state_dict(ck["optim_guidance"])
    set_rng_state(ck["rng"], r.device)
    return int(step), path


# ---------------------------------------------------------------------------------- loop


def train_dd2(cfg: DD2Config) -> DD2Result:
    """Train (or resume) a DD2 generator for `cfg.teacher` into `cfg.out`."""
    if not cfg.teacher or not cfg.out:
        raise ValueError("DD2Config needs a teacher and out (run folder)")
    check_output_path(cfg.out, what="run folder")
    with dist_from_env(cfg.device) as dist, contextlib.ExitStack() as held:
        dist.on_main(lambda: bool(held.enter_context(output_folder(cfg.out,
                                                                   what="run folder"))))
        r = setup(cfg, dist)
        r.start, resumed = _resume(r)
        return _run(r, resumed)


def _run(r: DD2State, resumed: Path | None) -> DD2Result:
    cfg, out = r.cfg, Path(r.cfg.out)
    log = RunLogger(out, r.start, enabled=r.dist.is_main, tensorboard=cfg.tensorboard)
    res = DD2Result(out, r.start, r.start, [], [], None, 0.0)
    end = cfg.total_steps if cfg.stop_at is None else max(r.start, min(cfg.stop_at,
                                                                       cfg.total_steps))
    bar = tqdm(total=cfg.total_steps, initial=r.start, unit="step", desc="train dd2",
               dynamic_ncols=True, disable=not (cfg.progress and r.dist.is_main))
    t0 = time.perf_counter()
    try:
        for step in range(r.start, end):
            terms = train_step(r, step)
            done = step + 1
            res.losses.append(terms)
            bar.update(1)
            if done % cfg.log_every == 0 or done == cfg.total_steps:
                log.step(done, {k: v for k, v in terms.items() if k != "stage"})
            if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.total_steps:
                res.evals.append(_evaluate(r, done, log))
            if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done != cfg.total_steps:
                _checkpoint(r, done)
    finally:
        bar.close()
    res.seconds = time.perf_counter() - t0
    res.steps = max(end, r.start)
    if end > r.start and not (cfg.ckpt_every and end % cfg.ckpt_every == 0
                              and end != cfg.total_steps):
        _checkpoint(r, end)
    if end < cfg.total_steps:
        log.close()
        return res
    res.evals.append(_evaluate(r, res.steps, log))
    res.export = _export(r, out / EXPORT_NAME, res, resumed)
    log.close()
    return res


def _lr(base: float, k: int, warmup: int) -> float:
    return base * min(1.0, (k + 1) / warmup) if warmup else base


def _conditions(r: DD2State, step: int, salt: int) -> Condition:
    """The global batch's class labels of `step` (balanced cycle from a seeded offset), this
    rank's rows."""
    b, world = r.cfg.batch_size, r.dist.world_size
    index = np.arange(step * b, (step + 1) * b, dtype=np.int64)
    labels = sample_labels(r.cfg.seed + salt, index, "random", list(range(
        r.teacher.num_classes)))
    per = b // world
    return Condition(labels=labels[r.dist.rank * per:(r.dist.rank + 1) * per].to(r.device))


def _teacher_tokens(r: DD2State, step: int, cond: Condition) -> torch.Tensor:
    """Teacher sequences for stage 1: a pairs dataset's tokens (then its labels too), or fresh
    multinomial teacher samples seeded by (seed, step)."""
    n = len(cond)
    index = np.arange(step * n, (step + 1) * n, dtype=np.int64)
    choose = RowMultinomialChooser(choice_seeds(r.cfg.seed, index, b"dd2-teacher").tolist())
    with torch.no_grad():
        return decode(r.teacher, cond, r.teacher.default_sampling, choose).to(r.device)


def _pairs_batch(r: DD2State, step: int, salt: int = 0) -> PairsBatch:
    """This rank's rows of a seeded random global batch of the pairs dataset (CPU tensors)."""
    ds, b = r.pairs, r.cfg.batch_size // r.dist.world_size
    g = torch.Generator().manual_seed((r.cfg.seed + salt) * 1_000_003 + step)
    idx = torch.randint(len(ds), (r.cfg.batch_size,), generator=g)
    return ds.get(idx[r.dist.rank * b:(r.dist.rank + 1) * b])


def train_step(r: DD2State, step: int) -> dict:
    """One update of the stage `step` belongs to; returns the logged terms."""
    cfg = r.cfg
    stage = cfg.stage(step)
    per = cfg.batch_size // r.dist.world_size
    if cfg.batch_size % r.dist.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the process count")
    g = torch.Generator().manual_seed((cfg.seed * 7_919 + _DRAW_SALT) * 1_000_003 + step)
    lay = r.teacher.layout
    terms: dict = {"stage": stage}
    if stage == "regress":
        if r.pairs is not None:
            batch = _pairs_batch(r, step)
            tokens, cond = batch.tokens.to(r.device), batch.cond.to(r.device)
        else:
            cond = _conditions(r, step, 1)
            tokens = _teacher_tokens(r, step, cond)
        d = S.draws(g, per, lay.num_positions, r.teacher.codebook_dim, cfg.t_min, cfg.t_max,
                    r.device)
        _fault(r, step, d)
        loss = S.regression_loss(r.fake_model, r.teacher, tokens, cond, d, r.codebook)
        terms["regress"] = _apply(r, r.opt_fake, r.fake, loss, _lr(cfg.lr_guidance, step,
                                                                      cfg.warmup), step)
        return terms
    k = step - cfg.regress_steps
    rounds = 1 if stage == "warmup" else cfg.guidance_per_step
    for j in range(rounds):
        cond = _conditions(r, step, 2 + j)
        d = S.draws(g, per, lay.num_positions, r.teacher.codebook_dim, cfg.t_min, cfg.t_max,
                    r.device)
        _fault(r, step, d)
        with torch.no_grad():
            tokens, _ = S.generate(r.gen_model, d.noise, cond, r.codebook, r.choose)
        loss = S.guidance_loss(r.fake_model, tokens, cond, d, r.codebook)
        terms["guidance"] = _apply(r, r.opt_fake, r.fake, loss, cfg.lr_guidance, step)
    if stage == "alternate":
        cond = _conditions(r, step, 100)
        d = S.draws(g, per, lay.num_positions, r.teacher.codebook_dim, cfg.t_min, cfg.t_max,
                    r.device)
        loss, info = S.generator_loss(r.gen_model, r.fake, r.teacher, cond, d, r.codebook,
                                      r.choose)
        if cfg.pairs_weight > 0:
            batch = _pairs_batch(r, step, salt=_PAIRS_SALT)
            ce = S.pairs_regression_loss(r.gen_model, batch.noise.to(r.device),
                                         batch.cond.to(r.device), batch.tokens.to(r.device))
            loss = loss + cfg.pairs_weight * ce
            terms["pairs_ce"] = float(r.dist.mean(ce.detach().reshape(1)))
        kg = k - cfg.guidance_warmup
        terms["generator"] = _apply(r, r.opt_gen, r.gen, loss, _lr(cfg.lr_gen, kg, cfg.warmup),
                                    step)
        terms["score_gap"] = float(r.dist.mean(torch.tensor(info["score_gap"])))
        r.ema.update(r.gen, kg)
    return terms


def _fault(r: DD2State, step: int, d) -> None:
    if r.cfg.fault_nan_step is not None and step + 1 == r.cfg.fault_nan_step:
        d.eta.mul_(float("nan"))  # a corrupted batch (config hook, tests)


def _apply(r: DD2State, opt: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor,
           lr: float, step: int) -> float:
    value = float(r.dist.mean(loss.detach().float().cpu()))
    if not math.isfinite(value):
        _diverged(r, step + 1, f"the loss is {value}")
    for grp in opt.param_groups:
        grp["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), r.cfg.grad_clip))
    if not math.isfinite(norm):
        opt.zero_grad(set_to_none=True)
        _diverged(r, step + 1, f"the gradient norm is {norm}")
    opt.step()
    return value


def _diverged(r: DD2State, step: int, what: str) -> None:
    raise diverged(r.cfg.out, step, what, "Lower the learning rates")


def _checkpoint(r: DD2State, done: int) -> None:
    if r.dist.is_main:
        save_checkpoint(r.cfg.out, done, {
            "step": done, "model": r.gen.state_dict(), "guidance": r.fake.state_dict(),
            "ema": r.ema.state_dict(), "optim": r.opt_gen.state_dict(),
            "optim_guidance": r.opt_fake.state_dict(), "rng": rng_state(r.device),
            "identity": _identity(r.cfg, r.teacher)}, r.cfg.keep_last)
    r.dist.barrier()


@torch.no_grad()
def _evaluate(r: DD2State, done: int, log: RunLogger) -> dict:
    """The EMA generator on fixed noise and labels: the teacher's NLL of its tokens (bits per
    token; the teacher's own samples score its entropy) and the fraction of distinct token
    sequences."""
    rec: dict = {"step": done}
    if r.dist.is_main:
        g = torch.Generator().manual_seed(r.cfg.seed + 12345)
        n, lay = r.cfg.eval_samples, r.teacher.layout
        noise = torch.randn(n, lay.num_positions, r.teacher.codebook_dim, generator=g)
        labels = torch.arange(n) % r.teacher.num_classes
        cond = Condition(labels=labels.to(r.device))
        tokens, _ = S.generate(r.ema.module, noise.to(r.device), cond, r.codebook, r.choose)
        rec["teacher_nll_bits"] = S.teacher_nll_bits(r.teacher, tokens, cond)
        rec["distinct"] = len({tuple(t) for t in tokens.tolist()}) / n
        log.eval(done, rec)
    r.dist.barrier()
    return rec


def _export(r: DD2State, path: Path, res: DD2Result, resumed: Path | None) -> Path | None:
    if r.dist.is_main:
        lay = r.teacher.layout
        export_student(r.ema.module, path, r.teacher, t_list=(0,), split=lay.num_steps,
                       spec=r.cfg.teacher, train_info={"method": "dd2", "steps": res.steps,
                                                       "config": r.cfg.to_json(),
                                                       "eval": res.evals[-1] if res.evals
                                                       else {}},
                       dd_choice="flow" if r.cfg.dd_choice == "flow" else None)
    r.dist.barrier()
    return path if r.dist.is_main else None
