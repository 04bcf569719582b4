"""`ardistill bench TARGET`: speed benchmarks that print numbers (ratios measured in one run).

Each target's workflow lives in `ardistill.bench.<target>` with an `Options` dataclass (the
flags below, same names) and `run(options)`; `ardistill bench` alone runs the default target,
`sample`, with its options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ardistill.bench import flow, pairs, sample, student, teacher, train, vq
from ardistill.cli.options import add_dtype, add_json, from_args
from ardistill.flow.solver import DEFAULT_NUM_STEPS


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default="llamagen-b", help="comma-separated teacher presets")
    p.add_argument("--batch", type=int, default=8, help="throughput batch (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median)")
    p.add_argument("--teacher-involved", default=None, metavar="N,M",
                   help="teacher-involved setting (default 0,num_steps//8); 'none' to skip")
    p.add_argument("--no-teacher", action="store_true", help="skip the (slow) teacher timing")
    add_dtype(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the student")
    p.add_argument("--quick", action="store_true", help="1 timed run, throughput batch 2")
    add_json(p)


def _teacher_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default="llamagen-b,var-d16",
                   help="comma-separated teacher presets (default: llamagen-b,var-d16)")
    p.add_argument("--batch", type=int, default=16, help="throughput batch size (default 16)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median)")
    add_dtype(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for this run (0: leave torch's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the per-step forward")
    p.add_argument("--int8", action="store_true",
                   help="also time each setting with the teacher's linear layers in int8 (CPU, "
                   "float32; `ardistill sample --int8`), right after")
    p.add_argument("--quick", action="store_true",
                   help="1 timed run, throughput batch 4 (a smoke test of the harness)")
    p.add_argument("--official-llamagen", type=Path, default=None, metavar="DIR",
                   help="also time the official LlamaGen generate() from this checkout")
    add_json(p)


def _student_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default="llamagen-b",
                   help="comma-separated teacher presets whose students are timed")
    p.add_argument("--steps", default="1,2", help="DD step counts to time: 1, 2 or both")
    p.add_argument("--batch", type=int, default=8, help="throughput batch size (default 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per setting (median)")
    add_dtype(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for this run (0: leave torch's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the student")
    p.add_argument("--int8", action="store_true",
                   help="also time each setting with the student's linear layers in int8 "
                   "(CPU, float32 students; `ardistill sample --int8`), right after")
    p.add_argument("--quick", action="store_true",
                   help="1 timed run, throughput batch 2 (a smoke test of the harness)")
    p.add_argument("--official-dd", type=Path, default=None, metavar="DIR",
                   help="also time the official DD code: the LlamaGen folder of a "
                        "microsoft/distilled_decoding checkout")
    add_json(p)


def _pairs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default="llamagen-b,var-d16",
                   help="comma-separated teacher presets (default: llamagen-b,var-d16)")
    p.add_argument("--num", type=int, default=32, help="samples timed per preset (default 32)")
    p.add_argument("--micro-batch", type=int, default=16, help="samples per teacher pass")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples decoded together (default: all --num)")
    p.add_argument("--flow-steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    add_dtype(p, default="fp32", help="teacher dtype (default fp32, as gen-pairs: the flow map "
              "needs exact probabilities)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (the gen-pairs setting)")
    p.add_argument("--compare-batch", action="store_true",
                   help="also time the samples as one teacher session (no micro-batches)")
    p.add_argument("--quick", action="store_true",
                   help="2 samples in micro-batches of 2 (a smoke test of the harness)")
    add_json(p)


def _flow_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p.add_argument("--quick", action="store_true",
                   help="batch 256 only, 1 timed run, at most 100 agreement rows, teacher batch "
                   "at most 64")
    p.add_argument("--batches", default="256,2048",
                   help="positions per map call (default 256,2048)")
    p.add_argument("--num-steps", type=int, default=None,
                   help=f"solver steps (default: the library default, {DEFAULT_NUM_STEPS})")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (best is kept)")
    p.add_argument("--agreement-rows", type=int, default=2000,
                   help="rows per setting and distribution compared with the reference")
    p.add_argument("--seed", type=int, default=100,
                   help="seed of the problems compared with the reference (default 100)")
    p.add_argument("--ref-cache", default=None, metavar="DIR",
                   help="read / store the float64 reference tokens here (they take minutes)")
    p.add_argument("--sweep", default=None, metavar="N,N,...",
                   help="print only the accuracy table: agreement and cost at these num_steps")
    p.add_argument("--teacher-batch", type=int, default=256,
                   help="batch of the LlamaGen-B decode step (0: skip the teacher)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for this run (0: leave torch's default)")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default="mnist-llamagen,llamagen-b",
                   help="teacher presets whose students are trained (random weights)")
    p.add_argument("--batch", type=int, default=8, help="samples per step (default 8)")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 (autocast) or 'fp32,bf16'")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s for MFU (default: table for H100/H200 by device name)")
    add_json(p)


def _vq_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default="llamagen-b,var-d16",
                   help="comma-separated teacher presets whose VQ decoders are timed")
    p.add_argument("--batch", type=int, default=1, help="images per decode (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for this run (0: leave torch's default)")
    p.add_argument("--official-llamagen", type=Path, default=None, metavar="DIR",
                   help="also time the official LlamaGen VQ decoder from this checkout")
    p.add_argument("--official-var", type=Path, default=None, metavar="DIR",
                   help="also time the official VAR VQVAE decoder from this checkout")
    add_json(p)


# target -> (workflow module, its flags)
TARGETS = {"sample": (sample, _sample_args), "teacher": (teacher, _teacher_args),
           "student": (student, _student_args), "pairs": (pairs, _pairs_args),
           "flow": (flow, _flow_args), "train": (train, _train_args), "vq": (vq, _vq_args)}
DEFAULT_TARGET = "sample"


def _runner(module):
    def run(args: argparse.Namespace) -> int:
        return module.run(from_args(module.Options, args))

    return run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (prints numbers; see README)")
    module, add_args = TARGETS[DEFAULT_TARGET]
    add_args(p)
    p.set_defaults(func=_runner(module))
    targets = p.add_subparsers(dest="bench_target", metavar="TARGET")
    for name, (module, add_args) in TARGETS.items():
        tp = targets.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        add_args(tp)
        tp.set_defaults(func=_runner(module))
