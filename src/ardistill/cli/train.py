"""`ardistill train`: train a DD student from a pairs dataset (docs/training.md).

    ardistill train --pairs PAIRS --out RUN [--recipe tiny-1step] [--steps N] ...

A named recipe (training/config.py) gives every default; flags override single fields. An
existing run in RUN is resumed from its last checkpoint. Under torchrun every process runs the
same command (gloo on the CPU, nccl with --device cuda); --batch-size is the global batch.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ardistill.cli.options import set_threads
from ardistill.training.config import RECIPES, recipe
from ardistill.training.loop import train

# flag -> TrainConfig field (top level)
_TOP = {"steps": int, "batch_size": int, "split": int, "holdout": int, "eval_every": int,
        "eval_samples": int, "ckpt_every": int, "keep_last": int, "log_every": int,
        "ema_decay": float, "seed": int, "teacher": str, "tokenizer_ckpt": str}
_OPTIM = {"lr": float, "weight_decay": float, "warmup_steps": int, "schedule": str,
          "min_lr_ratio": float, "grad_clip": float}
_LOSS = {"ce": float, "latent": float, "perceptual": str, "perceptual_weight": float,
         "lpips_vgg": str, "lpips_linear": str}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a DD student (1- or 2-step) from a pairs dataset",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    p.set_defaults(func=train_command)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", required=True, help="pairs dataset folder (ardistill gen-pairs)")
    p.add_argument("--out", required=True, help="run folder (created, or resumed)")
    p.add_argument("--recipe", default="tiny-1step", choices=sorted(RECIPES),
                   help="named defaults (default tiny-1step)")
    p.add_argument("--two-step", action="store_true", default=None,
                   help="train timesteps {0, t2} with the teacher preset's released t2")
    p.add_argument("--timesteps", default=None, help="explicit DD timesteps, e.g. '0' or '0,20'")
    p.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU intra-op threads (1 is fastest on a busy machine)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log to RUN/tb (needs the tensorboard package)")
    p.add_argument("--no-progress", action="store_true")
    for table in (_TOP, _OPTIM, _LOSS):
        for name, typ in table.items():
            p.add_argument("--" + name.replace("_", "-"), type=typ, default=None)


def config_from_args(args: argparse.Namespace):
    cfg = recipe(args.recipe, pairs=str(args.pairs), out=str(args.out))
    top = {k: getattr(args, k) for k in _TOP if getattr(args, k) is not None}
    for k in ("two_step", "bf16", "device", "tensorboard"):
        if getattr(args, k) is not None:
            top[k] = getattr(args, k)
    if args.timesteps is not None:
        try:
            top["timesteps"] = tuple(int(s) for s in args.timesteps.split(",") if s.strip())
        except ValueError as e:
            raise ValueError(f"--timesteps {args.timesteps!r}: expected integers like "
                             "'0,20'") from e
    if args.no_progress:
        top["progress"] = False
    optim = replace(cfg.optim, **{k: getattr(args, k) for k in _OPTIM
                                  if getattr(args, k) is not None})
    loss = replace(cfg.loss, **{k: getattr(args, k) for k in _LOSS
                                if getattr(args, k) is not None})
    return replace(cfg, optim=optim, loss=loss, **top)


def train_command(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    res = train(config_from_args(args))
    ev = ", ".join(f"{k} {v:.4f}" for k, v in res.last_eval.items() if k != "step")
    if res.export is not None:
        print(f"train: {res.run}: {res.steps} steps ({res.steps - res.start} this run, "
              f"{res.samples_per_second:.1f} samples/s); held-out {ev}")
        print(f"train: EMA student exported to {res.export}")
    return 0
