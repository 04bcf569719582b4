"""`ardistill train`: train a DD student (docs/training.md).

    ardistill train --pairs PAIRS --out RUN [--recipe tiny-1step] [--steps N] ...   # DD1
    ardistill train --method dd2 --teacher T --out RUN [--recipe mnist-dd2] ...      # DD2

DD1 (default) regresses a student on the flow-mapped pairs of `gen-pairs`; DD2 distils a
one-step generator against the teacher's exact conditional scores and needs no pairs
(`training.dd2`). A named recipe gives every default; flags override single fields; a flag of
the other method is an error. An existing run in RUN is resumed from its last checkpoint.
Under torchrun every process runs the same command (gloo on the CPU, nccl with --device cuda);
--batch-size is the global batch.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ardistill.cli.options import set_threads
from ardistill.training.config import RECIPES, recipe
from ardistill.training.dd2 import DD2_RECIPES, dd2_recipe, train_dd2
from ardistill.training.loop import train

# flag -> TrainConfig field (top level)
_TOP = {"steps": int, "batch_size": int, "split": int, "holdout": int, "eval_every": int,
        "eval_samples": int, "ckpt_every": int, "keep_last": int, "log_every": int,
        "ema_decay": float, "seed": int, "teacher": str, "tokenizer_ckpt": str,
        "init_student": str}
_OPTIM = {"lr": float, "weight_decay": float, "warmup_steps": int, "schedule": str,
          "min_lr_ratio": float, "grad_clip": float}
_LOSS = {"ce": float, "latent": float, "perceptual": str, "perceptual_weight": float,
         "lpips_vgg": str, "lpips_linear": str}
# DD2 only (flag -> DD2Config field)
_DD2 = {"regress_steps": int, "guidance_warmup": int,
        "guidance_per_step": int, "lr_gen": float, "lr_guidance": float,
        "pairs_weight": float, "dd_choice": str}
_HELP = {
    "pairs_weight": "DD2: weight of DD1's cross-entropy on --pairs in the generator's loss (an "
                    "anchor against mode seeking; default 0: pure DD2)",
    "dd_choice": "DD2: how the generator's logits become its samples in training: argmax "
                 "(default) or flow (the flow choice it will sample with; recorded in the "
                 "exported file)"}
# flags both methods take
_SHARED = ("steps", "batch_size", "eval_every", "eval_samples", "ckpt_every", "keep_last",
           "log_every", "ema_decay", "seed", "teacher", "tokenizer_ckpt", "grad_clip",
           "init_student")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a DD student: DD1 (1- or 2-step, from a pairs "
                       "dataset) or DD2 (one step, from the teacher's scores)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    p.set_defaults(func=train_command)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("dd1", "dd2"), default="dd1",
                   help="dd1 (default): regress the flow map's pairs; dd2: conditional score "
                   "distillation, no pairs needed")
    p.add_argument("--pairs", default=None, help="pairs dataset folder (ardistill gen-pairs); "
                   "DD1: required; DD2: optional teacher sequences for its first stage, and with "
                   "--pairs-weight W > 0 an anchor of the generator on DD1's cross-entropy")
    p.add_argument("--out", required=True, help="run folder (created, or resumed)")
    p.add_argument("--recipe", default=None, choices=sorted(RECIPES) + sorted(DD2_RECIPES),
                   help="named defaults (default: tiny-1step for dd1, mnist-dd2 for dd2)")
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
    for table in (_TOP, _OPTIM, _LOSS, _DD2):
        for name, typ in table.items():
            p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                           help=_HELP.get(name))


def _given(args: argparse.Namespace, names) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) not in
            (None, False)]


def config_from_args(args: argparse.Namespace):
    """The DD1 TrainConfig the flags describe."""
    if args.pairs is None:
        raise ValueError("DD1 training needs --pairs (a dataset of `ardistill gen-pairs`); "
                         "--method dd2 needs none")
    wrong = _given(args, _DD2)
    if wrong:
        raise ValueError(f"{', '.join(wrong)} apply to --method dd2 only")
    name = args.recipe or "tiny-1step"
    if name not in RECIPES:
        raise ValueError(f"--recipe {name} is a DD2 recipe; DD1 recipes: "
                         f"{', '.join(sorted(RECIPES))}")
    cfg = recipe(name, pairs=str(args.pairs), out=str(args.out))
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


def dd2_config_from_args(args: argparse.Namespace):
    """The DD2Config the flags describe."""
    dd1_only = [k for k in (*_TOP, *_OPTIM, *_LOSS) if k not in _SHARED] + ["two_step",
                                                                              "timesteps", "bf16"]
    wrong = _given(args, dd1_only)
    if wrong:
        raise ValueError(f"{', '.join(wrong)} apply to DD1 training only (--method dd1)")
    if not args.teacher:
        raise ValueError("--method dd2 needs --teacher (a preset, checkpoint or factory)")
    name = args.recipe or "mnist-dd2"
    if name not in DD2_RECIPES:
        raise ValueError(f"--recipe {name} is a DD1 recipe; DD2 recipes: "
                         f"{', '.join(sorted(DD2_RECIPES))}")
    over = {k: getattr(args, k) for k in (*_SHARED, *_DD2) if getattr(args, k) is not None
            and k != "grad_clip"}
    if args.grad_clip is not None:
        over["grad_clip"] = args.grad_clip
    for k in ("device", "tensorboard", "pairs"):
        if getattr(args, k) is not None:
            over[k] = getattr(args, k)
    if args.no_progress:
        over["progress"] = False
    return dd2_recipe(name, out=str(args.out), **over)


def train_command(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    if args.method == "dd2":
        res = train_dd2(dd2_config_from_args(args))
        if res.export is not None:
            ev = ", ".join(f"{k} {v:.4f}" for k, v in (res.evals[-1] if res.evals else {})
                           .items() if k != "step")
            print(f"train: {res.run}: DD2, {res.steps} steps ({res.steps - res.start} this "
                  f"run, {res.seconds:.0f} s); EMA generator: {ev}")
            print(f"train: EMA student exported to {res.export}")
        return 0
    res = train(config_from_args(args))
    ev = ", ".join(f"{k} {v:.4f}" for k, v in res.last_eval.items() if k != "step")
    if res.export is not None:
        print(f"train: {res.run}: {res.steps} steps ({res.steps - res.start} this run, "
              f"{res.samples_per_second:.1f} samples/s); held-out {ev}")
        print(f"train: EMA student exported to {res.export}")
    return 0
