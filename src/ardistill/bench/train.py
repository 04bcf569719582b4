"""Student training speed: samples per second of the DD training step (and MFU on CUDA).

For each teacher preset (random weights: speed does not depend on them) the student is built
and trained on synthetic pairs (uniform tokens, Gaussian noise, timesteps {0, t2} of the
preset) with exactly the training step's pieces: `pairs.training_inputs`, the student under
optional bf16 autocast, `training.losses.dd_loss` (ce + latent), backward, clipping, AdamW,
EMA. Reported: median seconds per step over `--repeats` after `--warmup` steps, samples/s,
and with `--device cuda` the model FLOPs utilisation: analytic training FLOPs per sample
(6 x matmul parameters x sequence + 12 x layers x sequence^2 x width, the PaLM convention:
attention scores counted in full) over the peak (`--peak-tflops` or the table for H100/H200).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ardistill.bench.timing import machine_header
from ardistill.core.pairs_dataset import PairsBatch, training_inputs
from ardistill.errors import UserError
from ardistill.student.registry import build_student
from ardistill.teachers.registry import get_preset, load_teacher
from ardistill.training.config import LossConfig
from ardistill.training.ema import EMA
from ardistill.training.losses import dd_loss

# Dense peak TFLOP/s (vendor datasheets, SXM): bf16 tensor cores; fp32 via TF32 tensor cores.
PEAK_TFLOPS = {"H100": {"bf16": 989.0, "fp32": 494.7}, "H200": {"bf16": 989.0, "fp32": 494.7}}


@dataclass
class Options:
    """The options of `ardistill bench train` (the command line's flags, same names)."""

    presets: str = 'mnist-llamagen,llamagen-b'
    batch: int = 8
    dtype: str = 'fp32'
    device: str = 'cpu'
    threads: int = 0
    warmup: int = 1
    repeats: int = 3
    peak_tflops: float | None = None
    json: Path | None = None



def matmul_params(model: nn.Module) -> int:
    """Parameters of the Linear layers (embedding tables excluded: they do no matmul)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def train_flops_per_sample(student: nn.Module, seq: int) -> float:
    """6 N L + 12 layers L^2 width (forward + backward, per sample of sequence L)."""
    gpt = getattr(getattr(student, "config", None), "gpt", None)
    var = getattr(getattr(student, "config", None), "var", None)
    if gpt is not None:
        layers, width = gpt.n_layer, gpt.dim
    elif var is not None:
        layers, width = var.depth, var.width
    else:
        raise ValueError("unknown student config")
    return 6.0 * matmul_params(student) * seq + 12.0 * layers * seq * seq * width


def _seq_len(student, teacher) -> int:
    cls = getattr(getattr(student.config, "gpt", None), "cls_token_num", None)
    return teacher.layout.num_positions + (cls if cls is not None else 1)


def _peak(args, device: torch.device, dtype: str) -> float | None:
    if args.peak_tflops is not None:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, table in PEAK_TFLOPS.items():
        if key in name:
            return table[dtype]
    return None


def bench_one(preset: str, dtype: str, args, device: torch.device) -> dict:
    teacher = load_teacher(preset, device=device, random_weights=True)
    dd = get_preset(preset).dd
    g = torch.Generator().manual_seed(0)
    student = build_student(teacher, generator=g, device=device, dtype=torch.float32).train()
    ema = EMA(student, 0.999)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    cb = teacher.dd_codebook().to(device)
    n, d, b = teacher.layout.num_positions, teacher.codebook_dim, args.batch
    batch = PairsBatch(torch.randn(b, n, d, generator=g),
                       torch.randint(teacher.vocab_size, (b, n), generator=g),
                       teacher.sample_conditions(b, g), torch.arange(b))
    t = torch.tensor([0, dd.t2])[torch.arange(b) % 2]
    inp = training_inputs(batch, t.to(device), cb, teacher.layout)
    cond = batch.cond.to(device)

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = student(inp.x_t, cond, inp.t)
            loss = dd_loss(out, inp, cb, teacher.layout, dd.split, LossConfig()).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        ema.update(student, i)

    runs = []
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        step(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            runs.append(time.perf_counter() - t0)
    sec = statistics.median(runs)
    fastest = min(runs)
    flops = train_flops_per_sample(student, _seq_len(student, teacher))
    peak = _peak(args, device, dtype)
    rec = {"preset": preset, "dtype": dtype, "device": str(device), "batch": b,
           "params": sum(p.numel() for p in student.parameters()),
           "s_per_step": sec, "min_s_per_step": fastest, "repeats": len(runs),
           "warmup": args.warmup,
           "samples_per_s": b / sec, "train_gflops_per_sample": flops / 1e9,
           "achieved_tflops": flops * b / sec / 1e12}
    if peak:
        rec["peak_tflops"], rec["mfu"] = peak, rec["achieved_tflops"] / peak
    return rec


def run(args: Options) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available in this torch")
    device = torch.device(args.device)
    dtypes = [s.strip() for s in args.dtype.split(",") if s.strip()]
    if not dtypes or any(x not in ("fp32", "bf16") for x in dtypes):
        raise UserError(f"--dtype takes fp32 and/or bf16, got {args.dtype!r}")
    results = []
    print(machine_header(",".join(dtypes), str(device)), flush=True)
    try:
        for preset in [s.strip() for s in args.presets.split(",") if s.strip()]:
            for dt in dtypes:
                rec = bench_one(preset, dt, args, device)
                results.append(rec)
                mfu = f", MFU {100 * rec['mfu']:.1f}%" if "mfu" in rec else ""
                print(f"train {preset:16s} {dt:5s} {device}: batch {rec['batch']}, "
                      f"{rec['s_per_step']:.3f} s/step (median of {rec['repeats']}, min "
                      f"{rec['min_s_per_step']:.3f}; {rec['warmup']} warm-up), "
                      f"{rec['samples_per_s']:.3g} samples/s, "
                      f"{rec['train_gflops_per_sample']:.1f} GFLOP/sample, "
                      f"{rec['achieved_tflops']:.3f} TFLOP/s{mfu}", flush=True)
    except (KeyError, ValueError) as e:
        raise UserError(str(e)) from e
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
