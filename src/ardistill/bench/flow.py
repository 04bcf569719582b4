"""Flow-map speed: tokens mapped per second, agreement with the reference, teacher-step ratio.

Synthetic problems of `ardistill.flow.reference` (LlamaGen-like: V = 16384, d = 8, top-k 8000;
VAR-like: V = 4096, d = 32, top-k 900; flat and peaked distributions). Printed, in order:
1. tokens mapped per second at the default step count for each setting, distribution and batch
   (positions mapped in one call), with the mean full-codebook and pruned denoiser evaluations
   per token;
2. token agreement with the float64 reference solver on a sample;
3. one LlamaGen-B decode step (random weights, CFG 2.0, KV cache) at the same batch as the
   LlamaGen-like map, and the map's cost relative to it (the goal: at most 10%).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ardistill.bench.flow_accuracy import print_accuracy_table, reference_tokens
from ardistill.bench.timing import Timing, machine_header, steady_time
from ardistill.errors import UserError
from ardistill.flow import FlowMap, FlowSolverConfig, native
from ardistill.flow.reference import LOGIT_STD, make_flow_problem
from ardistill.teachers.registry import load_teacher

SETTINGS = ("llamagen", "var")


@dataclass
class Options:
    """The options of `ardistill bench flow` (the command line's flags, same names)."""

    device: str = 'cpu'
    quick: bool = False
    batches: str = '256,2048'
    num_steps: int | None = None
    repeats: int = 3
    agreement_rows: int = 2000
    seed: int = 100
    ref_cache: str | None = None
    sweep: str | None = None
    teacher_batch: int = 256
    threads: int = 0



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_map(fm: FlowMap, noise: torch.Tensor, probs: torch.Tensor, repeats: int) -> Timing:
    """Wall-clock seconds of one `fm.solve(noise, probs)`: warmed up until steady, then median
    and min of `repeats` calls (`bench.timing.steady_time`)."""
    return steady_time(lambda: fm.solve(noise, probs), repeats, noise.device)


# no_grad, not inference_mode: weights created under inference_mode are inference tensors,
# which the teachers' packed-weight cache (teachers/fast_linear.py, `w._version`) rejects.
@torch.no_grad()
def teacher_decode_step_times(batch: int, device: torch.device | str, dtype: torch.dtype,
                              warmup: int = 2, steps: int = 5) -> Timing:
    """Seconds of one LlamaGen-B KV-cache decode step (next_probs + push) at `batch` images,
    with the preset's DD sampling (CFG 2.0: 2 x batch rows), random weights: median and min of
    `steps` consecutive steps (each timed alone) after `warmup` steps (a session moves on with
    every step, so the warm-up is a fixed count). Raises ImportError/KeyError when the teacher
    is not available."""
    device = torch.device(device)
    teacher = load_teacher("llamagen-b", random_weights=True, device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    cond = teacher.sample_conditions(batch, gen).to(device)
    session = teacher.start(cond, teacher.default_sampling)
    runs = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        probs = session.next_probs()
        session.push(probs.argmax(-1))
        _sync(device)
        if i >= warmup:
            runs.append(time.perf_counter() - t0)
    return Timing(statistics.median(runs), min(runs), steps, warmup, tuple(runs))


def _config(args) -> FlowSolverConfig:
    if args.num_steps is None:
        return FlowSolverConfig()
    return FlowSolverConfig(num_steps=args.num_steps)


def _kernels(device: torch.device) -> list[str]:
    """The full-codebook evaluation paths to time: the compiled kernel (`flow.native`) beside
    the PyTorch one on a CPU where it was built, else PyTorch only."""
    return ["native", "torch"] if device.type == "cpu" and native.available() else ["torch"]


def _speed_table(args, device: torch.device, batches: list[int]) -> dict:
    cfg = _config(args)
    print(f"tokens mapped per second (num_steps={cfg.num_steps}, device={device}, "
          f"threads={torch.get_num_threads()}; kernel: the full-codebook evaluations, "
          "native = the compiled one with the solver's steps in C, the default where it was "
          f"built; ms per call: median and min of {args.repeats} calls after a warm-up until "
          "two calls agree within 10%)")
    print(f"{'setting':9} {'dist':7} {'batch':>6} {'kernel':>7} {'tokens/s':>10} {'ms/call':>9} "
          f"{'min ms':>9} {'full evals':>10} {'pruned evals':>12}")
    times = {}
    for name in SETTINGS:
        for dist, std in LOGIT_STD.items():
            for b in batches:
                noise, probs, C = (t.to(device) for t in make_flow_problem(name, b, std, seed=1))
                for kernel in _kernels(device):
                    fm = FlowMap(C, cfg, use_native=kernel == "native")
                    t = time_map(fm, noise, probs, args.repeats)
                    r = fm.solve(noise, probs)
                    times[(name, dist, b, kernel)] = t
                    print(f"{name:9} {dist:7} {b:6d} {kernel:>7} {b / t.median:10.0f} "
                          f"{1e3 * t.median:9.1f} {1e3 * t.min:9.1f} "
                          f"{r.full_evals.float().mean().item():10.2f} "
                          f"{r.pruned_evals.float().mean().item():12.2f}", flush=True)
    return times


def _agreement(args, device: torch.device, n: int) -> None:
    cfg = _config(args)
    print(f"\nagreement with the float64 reference ({n} rows each, seed {args.seed})")
    for name in SETTINGS:
        for dist, std in LOGIT_STD.items():
            ref, _ = reference_tokens(name, std, n, args.seed, args.ref_cache)
            noise, probs, C = make_flow_problem(name, n, std, seed=args.seed)
            for kernel in _kernels(device):
                fm = FlowMap(C.to(device), cfg, use_native=kernel == "native")
                got = fm(noise.to(device), probs.to(device)).cpu()
                bad = int((got != ref).sum())
                print(f"{name:9} {dist:7} {kernel:>7} {100 * (1 - bad / n):8.3f}%  "
                      f"({bad} of {n} differ)", flush=True)


def _teacher_ratio(args, device: torch.device, times: dict, batch: int) -> None:
    print(f"\nLlamaGen-B decode step (random weights, float32, CFG 2.0) at batch {batch}")
    try:
        step = teacher_decode_step_times(batch, device, torch.float32)
    except (ImportError, KeyError) as e:
        print(f"teacher not available: {e}")
        return
    print(f"teacher step: {step.text()} (steps {step.warmup + 1}-{step.warmup + step.repeats} "
          "of a session)")
    cfg = _config(args)
    for dist, std in LOGIT_STD.items():
        for kernel in _kernels(device):
            sec = times.get(("llamagen", dist, batch, kernel))
            if sec is None:
                noise, probs, C = (t.to(device)
                                   for t in make_flow_problem("llamagen", batch, std, 1))
                fm = FlowMap(C, cfg, use_native=kernel == "native")
                sec = time_map(fm, noise, probs, args.repeats)
            print(f"flow map, llamagen {dist:6} {kernel:>6}: {1e3 * sec.median:.1f} ms = "
                  f"{100 * sec.median / step.median:.1f}% of the teacher step (medians; goal "
                  f"<= 10%; mins: {100 * sec.min / step.min:.1f}%)")


def run(args: Options) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError as e:
        raise UserError(f"--batches must be comma-separated integers: {e}") from e
    if not batches or min(batches) < 1:
        raise UserError("--batches needs at least one positive batch size")
    rows, tbatch = args.agreement_rows, args.teacher_batch
    if args.sweep is not None:
        try:
            steps = [int(n) for n in args.sweep.split(",") if n]
        except ValueError as e:
            raise UserError(f"--sweep must be comma-separated integers: {e}") from e
        if not steps or min(steps) < 1 or rows < 1:
            raise UserError("--sweep needs positive step counts and --agreement-rows >= 1")
        with torch.inference_mode():
            print_accuracy_table(steps, rows, args.seed, args.ref_cache, device)
        return 0
    if args.quick:
        batches, args.repeats, rows, tbatch = [256], 1, min(rows, 100), min(tbatch, 64)
    print(machine_header("fp32", str(device)))
    with torch.inference_mode():
        times = _speed_table(args, device, batches)
        if rows > 0:
            _agreement(args, device, rows)
    if tbatch > 0:
        _teacher_ratio(args, device, times, tbatch)
    return 0
