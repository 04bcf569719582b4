"""Options shared by several subcommands, defined once: the teacher, device, dtype, threads,
output folder, and small parsers of comma-separated values."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import torch

from ardistill.utils import dtypes

TEACHER_HELP = "teacher preset, model checkpoint path, or module:function factory"


def add_teacher(p: argparse.ArgumentParser, *, required: bool = True,
                help: str = TEACHER_HELP) -> None:
    p.add_argument("--teacher", required=required, default=None, help=help)
    p.add_argument("--tokenizer-ckpt", default=None, help="VQ tokenizer checkpoint (official "
                   "presets)")


def add_device(p: argparse.ArgumentParser, *, choices: tuple[str, ...] | None = None,
               help: str | None = None) -> None:
    p.add_argument("--device", default="cpu", choices=choices, help=help)


AUTO_HELP = ("auto (default): bf16 where it is fast (CUDA; CPUs with AMX or avx512_bf16, "
             "probed once and logged), fp32 elsewhere")


def add_dtype(p: argparse.ArgumentParser, default: str = "auto", help: str | None = None) -> None:
    """--dtype of inference commands: auto | fp32 | bf16 | fp16."""
    p.add_argument("--dtype", choices=dtypes.INFERENCE_CHOICES, type=dtypes.canonical,
                   default=default, help=help or AUTO_HELP)


def add_threads(p: argparse.ArgumentParser, default: int | None = 0, help: str | None = None
                ) -> None:
    p.add_argument("--threads", type=int, default=default,
                   help=help or "torch CPU threads for this run (0: leave torch's default)")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, default=None, help="write the results here")


def ints(text: str) -> tuple[int, ...]:
    """'0,80' -> (0, 80) (an argparse type)."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def class_ranges(text: str | None) -> tuple[int, ...] | None:
    """'0,3,10-12' -> (0, 3, 10, 11, 12)."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in filter(None, (s.strip() for s in text.split(","))):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError as e:
        raise ValueError(f"--classes {text!r}: expected ids and ranges like '0,3,10-19'") from e
    if not out or len(set(out)) != len(out):
        raise ValueError(f"--classes {text!r}: empty or repeated classes")
    return tuple(out)


def torch_device(name: str, local_rank: int = 0) -> torch.device:
    """"cpu" | "cuda" (cuda:LOCAL_RANK under torchrun) -> torch.device; ValueError without
    CUDA."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available in this torch")
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank)
    return torch.device(name)


def set_threads(n: int | None) -> None:
    """`--threads N` for a whole command (0 or None: leave torch's default)."""
    if n:
        if n < 1:
            raise ValueError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def from_args(cls, args: argparse.Namespace, **overrides):
    """A dataclass `cls` filled from the namespace fields of the same names."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
