"""`ardistill gen-pairs` and `ardistill verify-pairs` (docs/pairs.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ardistill.pairs.captions import load_captions
from ardistill.pairs.config import DTYPES, GenOptions, PairsSettings, default_batch_size
from ardistill.pairs.files import PairsFileError
from ardistill.pairs.run import generate_pairs
from ardistill.pairs.verify import recompute_samples, verify_pairs
from ardistill.teachers.base import Teacher
from ardistill.utils.checkpoint import CheckpointError
from ardistill.utils.dist import RankError, from_env

# Errors that are the user's to fix: printed as one line, no traceback.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, PairsFileError, CheckpointError,
               RankError)
TeacherLoader = Callable[[str, "str | None", torch.device, torch.dtype], Teacher]


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gen-pairs", help="generate a DD training set: (noise, tokens, "
                       "condition) triples from a teacher + the flow map",
                       description=__doc__)
    add_gen_args(g)
    g.set_defaults(func=gen_pairs_command)
    v = sub.add_parser("verify-pairs", help="check a pairs dataset and print its digest")
    add_verify_args(v)
    v.set_defaults(func=verify_pairs_command)


def add_gen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher preset or model checkpoint path")
    p.add_argument("--tokenizer-ckpt", default=None, help="VQ tokenizer checkpoint (official "
                   "presets)")
    p.add_argument("--num", "--num-samples", dest="num", type=int, required=True,
                   help="number of samples (under torchrun write --num-samples: torchrun "
                   "takes --num for an abbreviation of its own --numa-binding)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (created/resumed)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples decoded together (multiple of --micro-batch; default: the "
                   "first multiple >= 256, as the flow map is cheaper per row in large calls; "
                   "lower it if memory is short); does not change the content")
    p.add_argument("--micro-batch", type=int, default=16,
                   help="samples per teacher forward pass, always the same ones: part of the "
                   "dataset's identity (default 16; GPUs want 64-256)")
    p.add_argument("--shard-size", type=int, default=1024,
                   help="samples per shard file, a multiple of --micro-batch (default 1024)")
    p.add_argument("--flow-steps", type=int, default=None,
                   help="flow solver main-grid steps (default: the flow map's default)")
    p.add_argument("--cfg-scale", type=float, default=None)
    p.add_argument("--cfg-interval", type=int, default=None, help="LlamaGen only")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--classes", default=None,
                   help="class subset, e.g. '0,3,10-19' (default: all classes)")
    p.add_argument("--captions", type=Path, default=None,
                   help="caption features (.npz/.safetensors with caption, caption_mask) for "
                   "text-conditional teachers; sample i uses row i mod R")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: cuda:LOCAL_RANK under torchrun")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads while generating: part of the identity, CPU "
                   "results depend on it (default 1; use torchrun for more cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="dataset folder")
    p.add_argument("--recompute", type=int, default=0, metavar="K",
                   help="also re-derive K random samples with the teacher + flow map")
    p.add_argument("--recompute-seed", type=int, default=0)
    p.add_argument("--teacher", default=None,
                   help="teacher for --recompute (default: the one recorded in the dataset)")
    p.add_argument("--tokenizer-ckpt", default=None)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true")


def parse_classes(text: str | None) -> tuple[int, ...] | None:
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


def load_teacher_from_spec(spec: str, tokenizer_ckpt: str | None, device: torch.device,
                           dtype: torch.dtype) -> Teacher:
    from ardistill.teachers.registry import load_teacher

    return load_teacher(spec, tokenizer_ckpt=tokenizer_ckpt, device=device, dtype=dtype)


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available in this torch")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def settings_from_args(args: argparse.Namespace, teacher: Teacher) -> PairsSettings:
    over = {k: getattr(args, k) for k in ("cfg_scale", "cfg_interval", "temperature", "top_k",
                                          "top_p") if getattr(args, k) is not None}
    return PairsSettings(
        num=args.num, seed=args.seed, shard_size=args.shard_size, micro_batch=args.micro_batch,
        threads=args.threads, dtype=args.dtype, flow_steps=args.flow_steps,
        classes=parse_classes(args.classes),
        sampling=teacher.default_sampling.replace(**over),
    )


def gen_pairs_command(args: argparse.Namespace,
                      load: TeacherLoader = load_teacher_from_spec) -> int:
    dist = from_env()
    try:
        device = _device(args.device, dist.local_rank)
        teacher = load(args.teacher, args.tokenizer_ckpt, device, DTYPES[args.dtype])
        settings = settings_from_args(args, teacher)
        batch = args.batch_size or default_batch_size(settings.micro_batch)
        options = GenOptions(batch_size=batch, device=str(device),
                             progress=not args.no_progress)
        captions = load_captions(args.captions) if args.captions else None
        rep = generate_pairs(teacher, settings, args.out, options=options, captions=captions,
                             spec=args.teacher, dist=dist, device=device)
    except USER_ERRORS as e:
        return user_error(e)
    finally:
        dist.close()
    if dist.is_main:
        print(f"gen-pairs: {rep.out}: {settings.num} samples in {settings.num_shards} shards "
              f"({rep.shards_skipped} were already complete); this process made "
              f"{rep.samples} in {rep.seconds:.1f} s ({rep.pairs_per_second:.2f} pairs/s)")
        print(f"gen-pairs: complete, manifest written. Check with: ardistill verify-pairs "
              f"{rep.out}")
    return 0


def verify_pairs_command(args: argparse.Namespace,
                         load: TeacherLoader = load_teacher_from_spec) -> int:
    try:
        rep = verify_pairs(args.dir, progress=not args.no_progress)
        print(f"verify-pairs: {args.dir}: {rep.num_samples} samples in {rep.num_shards} shards: "
              "manifest, checksums, seeds, conditions and noise OK")
        for env in rep.environments:
            print(f"  made with torch {env['torch']} on {env['device']} ({env['device_name']})")
        if args.recompute > 0:
            _recompute(args, load)
    except PairsFileError as e:
        print(f"verify-pairs: FAILED: {e}", file=sys.stderr)
        return 1
    except USER_ERRORS as e:
        return user_error(e)
    print(f"digest: {rep.digest}")
    return 0


def _recompute(args: argparse.Namespace, load: TeacherLoader) -> None:
    from ardistill.pairs.manifest import read_manifest

    ident = read_manifest(args.dir)["identity"]
    spec = args.teacher or ident["teacher"]["spec"]
    device = _device(args.device, 0)
    teacher = load(spec, args.tokenizer_ckpt, device, DTYPES[ident["generation"]["dtype"]])
    rep = recompute_samples(args.dir, teacher, args.recompute, seed=args.recompute_seed,
                            device=device)
    if rep.mismatches:
        raise PairsFileError(
            f"recompute: {len(rep.mismatches)} of {len(rep.indices)} samples differ from the "
            f"teacher + flow map (first: {rep.mismatches[:5]}). On another device, thread "
            "count or torch version than the one recorded, last-bit differences can flip "
            "near-tie tokens; on the same one this is corruption.")
    print(f"verify-pairs: recomputed {len(rep.indices)} samples ({rep.micro_batches} "
          "micro-batches): all match")


def user_error(e: Exception) -> int:
    """Print a user's error as `ardistill: error: ...` and return exit code 2 (what
    `ardistill.cli.main` does with a CLIError; the pairs room does not import the cli)."""
    print(f"ardistill: error: {_message(e)}", file=sys.stderr)
    return 2


def _message(e: Exception) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e)
