"""`train(cfg) -> TrainResult`: the DD training loop (method.md §5, docs/training.md).

    from ardistill.training import recipe, train
    result = train(recipe("tiny-1step", pairs="pairs/", out="run/"))
    result.export          # RUN/student.safetensors: load with load_trained_student(path)

One step: the global batch of `StepSampler` (this rank's rows), X_t from the stored pairs
(`pairs.training_inputs`), the student under optional bf16 autocast, `dd_loss`, a finiteness
check of the loss (mean over ranks) before any update, backward (DDP averages gradients),
clipping (a non-finite gradient norm also stops the run), AdamW, lr schedule, EMA.
A non-finite loss or gradient raises `TrainingDiverged` before the optimizer touches the
weights, so the last checkpoint on disk is the last good state.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ardistill.core.pairs_dataset import training_inputs
from ardistill.student.files import export_student
from ardistill.teachers.base import Teacher
from ardistill.training.config import TrainConfig
from ardistill.training.dist import TrainDist, dist_from_env
from ardistill.training.evaluate import heldout_agreement
from ardistill.training.logs import RunLogger
from ardistill.training.losses import LossTerms, dd_loss
from ardistill.training.setup import RunState, setup_run
from ardistill.training.state import diverged, rng_state, save_checkpoint
from ardistill.utils.locks import check_output_path, output_folder

EXPORT_NAME = "student.safetensors"



@dataclass
class TrainResult:
    """run: the run folder; steps: completed steps; start: steps completed before this call
    (resume); losses: total loss of steps start+1..steps (mean over ranks); evals: every
    evaluation record ({"step", "agree_1step", ...}); export: the exported EMA student
    (None on ranks > 0 and after `stop_at`);
    seconds / samples_per_second: this call's training time and global throughput."""

    run: Path
    steps: int
    start: int
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    export: Path | None = None
    seconds: float = 0.0
    samples_per_second: float = 0.0

    @property
    def last_eval(self) -> dict:
        return self.evals[-1] if self.evals else {}


def train(cfg: TrainConfig, *, teacher: Teacher | None = None) -> TrainResult:
    """Train (or resume) a DD student on `cfg.pairs` into `cfg.out`.

    teacher: the teacher object that made the pairs (its fingerprint is checked); None loads
    the one the pairs manifest names. Under torchrun every rank calls this."""
    if not cfg.pairs or not cfg.out:
        raise ValueError("TrainConfig needs pairs (dataset folder) and out (run folder)")
    check_output_path(cfg.out, what="run folder")
    with dist_from_env(cfg.device) as dist, contextlib.ExitStack() as held:
        # rank 0 holds the run folder's lock; the process group is torn down cleanly
        dist.on_main(lambda: bool(held.enter_context(output_folder(cfg.out,
                                                                   what="run folder"))))
        r = setup_run(cfg, teacher, dist)
        return _run(r)


def _run(r: RunState) -> TrainResult:
    cfg = r.cfg
    out = Path(cfg.out)
    log = RunLogger(out, r.start, enabled=r.dist.is_main, tensorboard=cfg.tensorboard)
    if r.dist.is_main:
        log.write_config(cfg, r.teacher, r.schedule, r.resumed_from)
    res = TrainResult(out, r.start, r.start)
    bar = tqdm(total=cfg.steps, initial=r.start, unit="step", dynamic_ncols=True,
               desc="train", disable=not (cfg.progress and r.dist.is_main))
    t0 = time.perf_counter()
    end = cfg.steps if cfg.stop_at is None else max(r.start, min(cfg.stop_at, cfg.steps))
    try:
        for step in range(r.start, end):
            terms, gnorm = train_step(r, step)
            done = step + 1
            res.losses.append(terms["total"])
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            if done % cfg.log_every == 0 or done == cfg.steps:
                log.step(done, terms, lr=r.sched.get_last_lr()[0], grad_norm=gnorm,
                         samples_per_s=(done - r.start) * cfg.batch_size
                         / max(time.perf_counter() - t0, 1e-9))
            if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
                res.evals.append(_evaluate(r, done, log))
            if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done != cfg.steps:
                _checkpoint(r, done)
    finally:
        bar.close()
    res.seconds = time.perf_counter() - t0
    res.samples_per_second = (end - r.start) * cfg.batch_size / max(res.seconds, 1e-9)
    res.steps = max(end, r.start)
    if end > r.start and not (cfg.ckpt_every and end % cfg.ckpt_every == 0 and end != cfg.steps):
        _checkpoint(r, end)  # (unless the loop just wrote this one)
    if end < cfg.steps:  # interrupted on purpose (stop_at): resumable, nothing exported
        log.close()
        return res
    res.evals.append(_evaluate(r, res.steps, log))
    res.export = _export(r, out / EXPORT_NAME, res)
    log.close()
    return res


def train_step(r: RunState, step: int) -> tuple[dict[str, float], float]:
    """One optimizer step (0-based `step`); returns the loss terms (mean over ranks) and the
    gradient norm before clipping."""
    cfg = r.cfg
    idx, t = r.sampler.local_batch(step)
    batch = r.train.get(idx)
    inp = training_inputs(batch, t.to(r.device), r.codebook, r.layout)
    if cfg.fault_nan_step is not None and step + 1 == cfg.fault_nan_step:
        inp.x_t = inp.x_t * float("nan")  # a corrupted batch (config hook, tests)
    cond = batch.cond.to(r.device)
    with torch.autocast(r.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        out = r.model(inp.x_t, cond, inp.t)
        terms = dd_loss(out, inp, r.codebook, r.layout, r.schedule.split, cfg.loss,
                        teacher=r.teacher, perceptual=r.perceptual)
    floats = _mean_terms(r.dist, terms)
    if not math.isfinite(floats["total"]):
        _diverged(r, step + 1, f"the loss is {floats['total']}")
    r.opt.zero_grad(set_to_none=True)
    terms.total.backward()
    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    gnorm = float(torch.nn.utils.clip_grad_norm_(r.student.parameters(), max_norm))
    if not math.isfinite(gnorm):
        r.opt.zero_grad(set_to_none=True)
        _diverged(r, step + 1, f"the gradient norm is {gnorm}")
    r.opt.step()
    r.sched.step()
    r.ema.update(r.student, step)
    return floats, gnorm


def _mean_terms(dist: TrainDist, terms: LossTerms) -> dict[str, float]:
    vec = torch.stack([terms.total.detach().float(), terms.ce.float(), terms.latent.float(),
                       terms.perceptual.float()]).cpu()
    vec = dist.mean(vec)
    return dict(zip(("total", "ce", "latent", "perceptual"), vec.tolist()))


def _diverged(r: RunState, step: int, what: str) -> None:
    raise diverged(r.cfg.out, step, what, "Lower the learning rate or check the data")


def _checkpoint(r: RunState, done: int) -> None:
    if r.dist.is_main:
        payload = {"step": done, "model": r.student.state_dict(), "ema": r.ema.state_dict(),
                   "optim": r.opt.state_dict(), "sched": r.sched.state_dict(),
                   "rng": rng_state(r.device),
                   "identity": r.identity}
        save_checkpoint(r.cfg.out, done, payload, r.cfg.keep_last)
    r.dist.barrier()


def _evaluate(r: RunState, done: int, log: RunLogger) -> dict:
    rec: dict = {"step": done}
    if r.dist.is_main:
        t_lists = {"agree_1step": (0,)}
        if r.schedule.t2_eval is not None:
            t_lists["agree_2step"] = (0, r.schedule.t2_eval)
        rec.update(heldout_agreement(r.ema.module, r.held, r.codebook, r.schedule.split,
                                     t_lists, r.cfg.eval_samples))
        log.eval(done, rec)
    r.dist.barrier()
    return rec


def _export(r: RunState, path: Path, res: TrainResult) -> Path | None:
    if r.dist.is_main:
        export_student(r.ema.module, path, r.teacher, t_list=r.schedule.t_list,
                       split=r.schedule.split, spec=r.cfg.teacher or r.train.identity[
                           "teacher"]["spec"],
                       train_info={"steps": res.steps, "config": r.cfg.to_json(),
                                   "eval": res.last_eval})
    r.dist.barrier()
    return path if r.dist.is_main else None
