"""`ardistill gen-pairs` and `ardistill verify-pairs` (docs/pairs.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ardistill.cli.options import (
    add_prompts,
    add_teacher,
    class_ranges,
    encoder_spec,
    torch_device,
)
from ardistill.core.captions import caption_source, default_encoder
from ardistill.core.pairs_format import read_manifest
from ardistill.errors import PairsFileError
from ardistill.pairs.config import GenOptions, PairsSettings, default_batch_size
from ardistill.pairs.run import generate_pairs
from ardistill.pairs.verify import recompute_samples, verify_pairs
from ardistill.teachers.base import Teacher
from ardistill.teachers.registry import load_teacher
from ardistill.utils import dtypes
from ardistill.utils.dist import from_env

GEN_HELP = ("generate a DD training set: (noise, tokens, condition) triples from a teacher + "
            "the flow map")


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gen-pairs", help=GEN_HELP, description=__doc__)
    add_gen_args(g)
    g.set_defaults(func=gen_pairs_command)
    v = sub.add_parser("verify-pairs", help="check a pairs dataset and print its digest")
    add_verify_args(v)
    v.set_defaults(func=verify_pairs_command)


def add_gen_args(p: argparse.ArgumentParser) -> None:
    add_teacher(p)
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
    add_prompts(p)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: cuda:LOCAL_RANK under torchrun")
    p.add_argument("--dtype", default="fp32", choices=dtypes.DTYPE_CHOICES,
                   type=dtypes.canonical,
                   help="teacher compute dtype (default fp32: the flow map needs the exact "
                   "probabilities; part of the dataset's identity)")
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


def settings_from_args(args: argparse.Namespace, teacher: Teacher) -> PairsSettings:
    over = {k: getattr(args, k) for k in ("cfg_scale", "cfg_interval", "temperature", "top_k",
                                          "top_p") if getattr(args, k) is not None}
    return PairsSettings(
        num=args.num, seed=args.seed, shard_size=args.shard_size, micro_batch=args.micro_batch,
        threads=args.threads, dtype=args.dtype, flow_steps=args.flow_steps,
        classes=class_ranges(args.classes),
        sampling=teacher.default_sampling.replace(**over),
    )


def gen_pairs_command(args: argparse.Namespace) -> int:
    with from_env() as dist:  # the process group torn down cleanly, errors or not
        device = torch_device(args.device, dist.local_rank)
        teacher = load_teacher(args.teacher, tokenizer_ckpt=args.tokenizer_ckpt, device=device,
                               dtype=dtypes.resolve(args.dtype))
        settings = settings_from_args(args, teacher)
        batch = args.batch_size or default_batch_size(settings.micro_batch)
        options = GenOptions(batch_size=batch, device=str(device),
                             progress=not args.no_progress)
        encoder = encoder_spec(args, device)
        if args.prompts is not None:  # an embedded text-conditional preset knows its encoder
            encoder = default_encoder(teacher.name, encoder)
        captions = caption_source(args.captions, args.prompts, encoder)
        rep = generate_pairs(teacher, settings, args.out, options=options, captions=captions,
                             spec=args.teacher, dist=dist, device=device)
    if dist.is_main:
        print(f"gen-pairs: {rep.out}: {settings.num} samples in {settings.num_shards} shards "
              f"({rep.shards_skipped} were already complete); this process made "
              f"{rep.samples} in {rep.seconds:.1f} s ({rep.pairs_per_second:.2f} pairs/s)")
        print(f"gen-pairs: complete, manifest written. Check with: ardistill verify-pairs "
              f"{rep.out}")
    return 0


def verify_pairs_command(args: argparse.Namespace) -> int:
    try:
        rep = verify_pairs(args.dir, progress=not args.no_progress)
        print(f"verify-pairs: {args.dir}: {rep.num_samples} samples in {rep.num_shards} shards: "
              "manifest, checksums, seeds, conditions and noise OK")
        for env in rep.environments:
            print(f"  made with torch {env['torch']} on {env['device']} ({env['device_name']})")
        if args.recompute > 0:
            _recompute(args)
    except PairsFileError as e:
        print(f"verify-pairs: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"digest: {rep.digest}")
    return 0


def _recompute(args: argparse.Namespace) -> None:
    ident = read_manifest(args.dir)["identity"]
    spec = args.teacher or ident["teacher"]["spec"]
    device = torch_device(args.device)
    teacher = load_teacher(spec, tokenizer_ckpt=args.tokenizer_ckpt, device=device,
                           dtype=dtypes.resolve(ident["generation"]["dtype"]))
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
