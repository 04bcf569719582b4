"""`ardistill teacher train|eval` and `ardistill zoo train-features`: build and measure the
weights that ship inside ardistill (the embedded teachers, the MNIST feature network).

    ardistill teacher train mnist-llamagen --out DIR [--stage tokenizer|ar|all] [--seed 0]
    ardistill teacher eval mnist-llamagen [--weights DIR] [--cfg 2.0 --top-k 0 ...]

`train` runs the preset's recipe (zoo/recipes.py): stage `tokenizer`, then stage `ar` on the
tokenizer written in DIR (`all`, the default, runs both); stage `eval` re-measures the teacher
in DIR (quality, speed, reference outputs) after a change of the preset's sampling settings.
The shipped files were made with `--out src/ardistill/weights` (docs/zoo.md).

`eval` samples a teacher (the shipped one, or the files in `--weights DIR`) and prints FID
against the train and held-out digits, the feature network's accuracy on the requested class,
precision / recall and the time per image.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ardistill.errors import UserError
from ardistill.teachers.registry import get_preset, load_teacher
from ardistill.utils.images import save_grid
from ardistill.zoo.build_teacher import (
    evaluate_teacher,
    is_text_conditional,
    measure_speed,
    prompt_conditions,
    run_ar_stage,
    run_eval_stage,
    run_tokenizer_stage,
)
from ardistill.zoo.features import (
    FeatureNetRecipe,
    describe_feature_net,
    train_feature_net,
    write_feature_net,
)
from ardistill.zoo.recipes import teacher_recipe
from ardistill.zoo.ship import ship_student
from ardistill.zoo.teacher_files import file_names

STAGES = ("tokenizer", "ar", "eval", "all")


def register(sub: argparse._SubParsersAction) -> None:
    z = sub.add_parser("zoo", help="rebuild the embedded default's shipped weights")
    cmds = z.add_subparsers(dest="zoo_command", metavar="COMMAND")
    cmds.required = True
    fp = cmds.add_parser("train-features", help=FEATURES_HELP)
    _features_args(fp)
    fp.set_defaults(func=run_train_features)
    sp = cmds.add_parser("ship-student", help="ship a trained student as the default of "
                         "`ardistill sample` (fp16 copy + record)")
    _ship_args(sp)
    sp.set_defaults(func=run_ship_student)
    p = sub.add_parser("teacher", help="train / evaluate the embedded teachers (mnist-*)")
    cmds = p.add_subparsers(dest="teacher_command", metavar="COMMAND")
    cmds.required = True
    tp = cmds.add_parser("train", help="train an embedded teacher (tokenizer, then AR model)")
    _train_args(tp)
    tp.set_defaults(func=run_train)
    ep = cmds.add_parser("eval", help="sample an embedded teacher and measure its quality")
    _eval_args(ep)
    ep.set_defaults(func=run_eval)


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", help="embedded teacher preset (mnist-llamagen, mnist-var)")
    p.add_argument("--out", required=True, type=Path,
                   help="output directory (the shipped copy lives in src/ardistill/weights)")
    p.add_argument("--stage", choices=STAGES, default="all",
                   help="tokenizer; ar (needs the tokenizer in --out; measures the teacher "
                   "too); eval (re-measure the teacher in --out with the preset's current "
                   "sampling, weights untouched); all (default: tokenizer then ar)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the recipe's, 0)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first LIMIT train images only (quick checks)")
    p.add_argument("--tokenizer-steps", type=int, default=None, help="override the recipe")
    p.add_argument("--ar-steps", type=int, default=None, help="override the recipe")
    p.add_argument("--eval-samples", type=int, default=None,
                   help="teacher samples for the quality record (default: the recipe's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", help="embedded teacher preset (mnist-llamagen, mnist-var)")
    p.add_argument("--weights", type=Path, default=None,
                   help="directory with the preset's files (default: the shipped ones)")
    p.add_argument("--cfg", type=float, default=None, help="CFG scale (default: the preset's)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--samples", type=int, default=1000, help="number of samples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=Path, default=None, help="write a PNG grid of 100 samples")
    p.add_argument("--json", type=Path, default=None, help="write the numbers as JSON")
    p.add_argument("--speed", action="store_true", help="also time one image at batch 1")
    p.add_argument("--no-progress", action="store_true")


def _embedded_preset(name: str):
    try:
        preset = get_preset(name)
    except KeyError as e:
        raise UserError(str(e.args[0])) from e
    if not preset.embedded:
        raise UserError(f"{name} is not an embedded teacher; only the mnist-* presets are "
                       "trained by ardistill")
    return preset


def _recipe(args: argparse.Namespace):
    try:
        recipe = teacher_recipe(args.preset)
    except KeyError as e:
        raise UserError(str(e.args[0])) from e
    if args.seed is not None:
        recipe = recipe.replace(seed=args.seed)
    if args.limit is not None:
        recipe = recipe.replace(limit=args.limit)
    if args.tokenizer_steps is not None:
        recipe = recipe.replace(tokenizer=replace(recipe.tokenizer, steps=args.tokenizer_steps))
    if args.ar_steps is not None:
        recipe = recipe.replace(ar=replace(recipe.ar, steps=args.ar_steps))
    if args.eval_samples is not None:
        recipe = recipe.replace(eval_samples=args.eval_samples)
    try:
        recipe.validate()
    except ValueError as e:
        raise UserError(str(e)) from e
    return recipe


def _command(args: argparse.Namespace, stage: str) -> str:
    argv = ["ardistill", "teacher", "train", args.preset, "--out", str(args.out),
            "--stage", stage]
    for flag in ("seed", "limit", "tokenizer_steps", "ar_steps", "eval_samples"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return shlex.join(argv)


def run_train(args: argparse.Namespace) -> int:
    preset, recipe = _embedded_preset(args.preset), _recipe(args)
    progress = not args.no_progress
    shares_tokenizer = is_text_conditional(preset)  # mnist-t2i: mnist-llamagen's VQ file
    if shares_tokenizer and args.stage == "tokenizer":
        raise UserError(f"{preset.name} has no tokenizer stage: it shares the tokenizer file "
                        f"{preset.extra['tokenizer_file']} (train that teacher's tokenizer)")
    if args.stage in ("tokenizer", "all") and not shares_tokenizer:
        rec = run_tokenizer_stage(preset, recipe, args.out, command=_command(args, "tokenizer"),
                                  progress=progress)
        q = rec["tokenizer"]["quality"]
        print(f"tokenizer: held-out MSE {q['heldout_mse']:.5f} (PSNR {q['heldout_psnr_db']:.2f} "
              f"dB), recon FID {q['recon_fid_train']:.3f}, codes used {q['codes_used']}/"
              f"{q['codebook_size']}, {rec['tokenizer']['training']['seconds']} s")
    if args.stage in ("ar", "eval", "all"):
        stage = "eval" if args.stage == "eval" else "ar"
        run = run_eval_stage if stage == "eval" else run_ar_stage
        try:
            rec = run(preset, recipe, args.out, command=_command(args, stage), progress=progress)
        except FileNotFoundError as e:
            raise UserError(str(e)) from e
        _print_quality(rec["teacher"]["quality"], rec["teacher"]["speed"])
        print(f"AR training {rec['ar']['training']['seconds']} s, final held-out NLL "
              f"{rec['ar']['training']['curve'][-1]['val_nll']:.4f} nats/token")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _print_quality(q: dict, speed: dict | None = None) -> None:
    print(f"samples    {q['n']}")
    print(f"FID        {q['fid_train']:.3f} vs train, {q['fid_heldout']:.3f} vs held-out")
    if "prompt_accuracy" in q:
        print(f"accuracy   {q['prompt_accuracy']:.4f} (feature network reads the digit the "
              "prompt names)")
    else:
        print(f"accuracy   {q['accuracy']:.4f} (feature network on the requested class)")
    print(f"precision  {q['precision']:.4f}   recall {q['recall']:.4f}   "
          f"IS {q['inception_score']:.3f}")
    if "copies_of_train_tokens" in q:
        print(f"copies     {q['copies_of_train_tokens']:.4f} of samples are token copies of a "
              "training digit")
    if speed:
        print(f"speed      {speed['seconds_per_image']:.4f} s/image at batch 1 "
              f"(AR {speed['ar_seconds']:.4f} + decode {speed['decode_seconds']:.4f}); "
              f"{speed['images_per_second_batch256']:.1f} images/s at batch 256")


def run_eval(args: argparse.Namespace) -> int:
    preset = _embedded_preset(args.preset)
    kw = {}
    if args.weights is not None:
        names = file_names(preset)
        kw = {"model_ckpt": args.weights / names["model"],
              "tokenizer_ckpt": args.weights / names["tokenizer"]}
    teacher = load_teacher(preset.name, **kw)
    over = {"cfg_scale": args.cfg, "top_k": args.top_k, "top_p": args.top_p,
            "temperature": args.temperature}
    sampling = teacher.default_sampling.replace(**{k: v for k, v in over.items() if v is not None})
    if args.samples < 10:
        raise UserError("--samples must be >= 10")
    kept: list = []
    conditions = None
    if is_text_conditional(preset):  # prompts balanced over the digits, seeded
        cond, digits, _ = prompt_conditions(preset, args.samples, args.seed)
        conditions = (cond, digits)
    q = evaluate_teacher(teacher, sampling, n=args.samples, seed=args.seed,
                         progress=not args.no_progress, samples_out=kept,
                         conditions=conditions)
    if conditions is not None:
        q["prompt_accuracy"] = q.pop("accuracy")
    speed = None
    if args.speed:
        speed = measure_speed(teacher, sampling, conditions=None if conditions is None
                              else (lambda k: conditions[0][:k]))
    print(f"teacher    {preset.name}  sampling {asdict(sampling)}")
    _print_quality(q, speed)
    if args.grid is not None:
        _, images, labels = kept[0]
        order = labels[:100].argsort(stable=True)  # one row per class
        save_grid(images[:100][order], args.grid, nrow=10)
    if args.json is not None:
        args.json.write_text(json.dumps({"preset": preset.name, "sampling": asdict(sampling),
                                         "quality": q, "speed": speed}, indent=1) + "\n")
    return 0


# --- `ardistill zoo train-features` ------------------------------------------------------

FEATURES_HELP = ("train the MNIST feature network (FID / IS / precision-recall of the embedded "
                 "default)")


def _features_args(p: argparse.ArgumentParser) -> None:
    d = FeatureNetRecipe()
    p.add_argument("--out", required=True, help="output directory (the shipped copy lives in "
                   "src/ardistill/weights)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first LIMIT train images only (quick checks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train_features(args: argparse.Namespace) -> int:
    if args.epochs < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--epochs and --limit must be >= 1")
    recipe = FeatureNetRecipe(seed=args.seed, epochs=args.epochs, limit=args.limit)
    try:
        model, train_record = train_feature_net(recipe, progress=not args.no_progress)
    except ImportError as e:
        raise UserError(str(e)) from e
    argv = ["ardistill", "zoo", "train-features", "--out", str(args.out), "--seed",
            str(args.seed), "--epochs", str(args.epochs)]
    if args.limit is not None:
        argv += ["--limit", str(args.limit)]
    record = {
        "command": shlex.join(argv),
        "recipe": asdict(recipe),
        **train_record,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ},
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        **describe_feature_net(model),
    }
    weights, meta = write_feature_net(model, record, args.out)
    print(f"held-out accuracy {record['heldout_accuracy']:.4f}  "
          f"(train {record['train_accuracy']:.4f}, {record['train_seconds']} s)")
    print(f"FID held-out vs train {record['fid_heldout_vs_train']:.3f}; "
          f"IS held-out {record['inception_score_heldout']:.3f}")
    print(f"wrote {weights} and {meta}", file=sys.stderr)
    return 0


# --- `ardistill zoo ship-student` ------------------------------------------------------


def _ship_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="embedded teacher preset")
    p.add_argument("--run", required=True, type=Path, help="a finished `ardistill train` run")
    p.add_argument("--steps", type=int, choices=(1, 2), default=1)
    p.add_argument("--method", choices=("dd1", "dd2"), default="dd1")
    p.add_argument("--fidelity", type=Path, default=None,
                   help="fidelity.json of scripts/fidelity.py measured on this student")
    p.add_argument("--fidelity-row", default=None,
                   help="its row for this student (e.g. dd1); the teacher's row is kept too")
    p.add_argument("--note", default="", help="free text kept in the record")
    p.add_argument("--dd-choice", choices=("argmax", "flow"), default=None,
                   help="record how this student's logits become tokens (what `sample "
                   "--dd-choice auto` uses): the choice its fidelity row measured")
    p.add_argument("--dd-temperature", type=float, default=None,
                   help="with --dd-choice flow: the temperature its fidelity row measured")
    p.add_argument("--out", type=Path, default=None,
                   help="weights folder (default: the package's, src/ardistill/weights)")


def run_ship_student(args: argparse.Namespace) -> int:
    fid = None
    if args.fidelity is not None:
        rows = json.loads(args.fidelity.read_text())["rows"]
        if args.fidelity_row not in rows:
            raise ValueError(f"--fidelity-row {args.fidelity_row!r} not in {sorted(rows)}")
        keep = ("fid", "fid_std", "precision", "recall", "class_accuracy", "num_samples",
                "command")
        fid = {name: {k: rows[name].get(k) for k in keep}
               for name in ("teacher", args.fidelity_row)}
    path = ship_student(args.teacher, args.run, args.steps, args.method, fid, args.out,
                        args.note, dd_choice=args.dd_choice,
                        dd_temperature=args.dd_temperature)
    print(f"shipped {path}")
    return 0
