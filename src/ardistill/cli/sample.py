"""`ardistill sample`: images from the teacher, a DD student (1 or 2 steps, any t_list,
teacher-involved) or a baseline (onestep*, skip-k), in one command.

Writes OUT/images/NNNNNN.png, OUT/grid.png, OUT/samples.npz (ADM evaluator layout: arr_0 uint8
(N, H, W, 3), arr_1 labels), OUT/tokens.npz (tokens, labels, index) and OUT/sample.json
(settings and time per image). Noise and labels are a pure function of (--seed, index): the
noise of sample i equals that of sample i of a pairs dataset with the same seed.
"""

from __future__ import annotations

import argparse

from ardistill.cli.options import add_dtype, add_prompts, add_teacher, encoder_spec, ints
from ardistill.core.choosers import CHOICES
from ardistill.sampling.methods import DD_CHOICES
from ardistill.sampling.run import sample
from ardistill.sampling.spec import (
    METHODS,
    DD2Method,
    DDMethod,
    Models,
    OneStepMethod,
    SampleConfig,
    SkipMethod,
    TeacherInvolvedMethod,
    TeacherMethod,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample images: teacher, DD student, teacher-involved, "
                       "baselines", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    p.set_defaults(func=sample_command)


def add_args(p: argparse.ArgumentParser) -> None:
    add_teacher(p)
    p.add_argument("--student", default=None, help="student file (default: the preset's "
                   "shipped student, when it has one)")
    p.add_argument("--method", choices=tuple(METHODS), default="dd")
    p.add_argument("--steps", type=int, choices=(1, 2), default=1,
                   help="DD steps: t_list (0,) or (0, t2) with the preset's t2")
    p.add_argument("--t-list", type=ints, default=None, help="DD timesteps, e.g. 0,80")
    p.add_argument("--split", type=int, default=None, help="AR steps taking the logits head "
                   "(default: the student file's, else the preset's released value)")
    p.add_argument("--teacher-involved", type=ints, default=None, metavar="N,M",
                   help="pre-trained-N-M: the teacher regenerates steps N..M-1 "
                   "(implies --method teacher-involved)")
    p.add_argument("--dd-choice", choices=("auto", *DD_CHOICES), default="auto",
                   help="how a DD student's logits become tokens: auto (default: the choice "
                   "the student file records; shipped students record the one that measured "
                   "best, else argmax), argmax (official), flow (the flow map of each "
                   "position's input noise over the student's distribution: deterministic in "
                   "the noise, keeps the alternatives the student hesitates between)")
    p.add_argument("--dd-temperature", type=float, default=None, metavar="T",
                   help="temperature of the flow choice: softmax(logits / T); below 1 "
                   "sharpens towards the argmax (default: the student file's recorded one, "
                   "else 1)")
    p.add_argument("--teacher-choice", choices=CHOICES, default="multinomial",
                   help="how the teacher picks tokens: multinomial (official), flow (flow map "
                   "of the same noise: deterministic in the noise), greedy")
    p.add_argument("--official-prefix-quirk", action="store_true",
                   help="VAR teacher-involved only: run the prefix without the block-causal "
                   "mask as the official intermediate_sample (compatibility)")
    p.add_argument("--skip", type=int, default=1, help="k of skip-k (--method skip)")
    p.add_argument("--marginals", default=None, help="onestep*: pairs dataset whose tokens "
                   "estimate the marginals (default: fresh teacher samples)")
    p.add_argument("--marginal-samples", type=int, default=512,
                   help="onestep*: fresh teacher samples for the marginals (default 512)")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", default="balanced",
                   help="balanced (i mod C), random (the pairs dataset's labels) or a list 1,7")
    p.add_argument("--captions", default=None, metavar="FILE",
                   help="text-conditional teachers: caption features (.npz / .safetensors with "
                   "caption (R, T, D) and caption_mask (R, T), left-padded; sample i uses row "
                   "i mod R, as gen-pairs does; the labels written are the rows)")
    add_prompts(p)
    p.add_argument("--flow-steps", type=int, default=None, help="flow solver main-grid steps")
    p.add_argument("--device", default="cpu")
    add_dtype(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the student (and the "
                   "VAR teacher's blocks)")
    p.add_argument("--int8", action="store_true",
                   help="CPU: the linear layers of the student and of the teacher's "
                   "transformer in int8 (weights per channel, activations per call; lossy: "
                   "docs/student-llamagen.md, docs/teachers.md); LlamaGen and VAR models in "
                   "float32 (with --int8, --dtype auto means fp32)")
    p.add_argument("--no-pngs", action="store_true", help="no per-image PNGs (grid and npz only)")
    p.add_argument("--out", required=True, help="output folder")


def method_from_args(args: argparse.Namespace):
    """The method spec the flags describe."""
    ti, name = args.teacher_involved, args.method
    if ti is not None:
        if len(ti) != 2:
            raise ValueError(f"--teacher-involved takes N,M, got {args.teacher_involved}")
        return TeacherInvolvedMethod(ti[0], ti[1], args.teacher_choice, args.split,
                                     args.official_prefix_quirk, args.dd_choice,
                                     args.dd_temperature)
    if args.official_prefix_quirk:
        raise ValueError("--official-prefix-quirk applies to teacher-involved sampling only")
    if name == "teacher-involved":
        raise ValueError("method teacher-involved needs --teacher-involved N,M")
    if name == "dd":
        return DDMethod(args.steps, args.t_list, args.split, args.dd_choice,
                        args.dd_temperature)
    if name == "dd2":
        if args.steps != 1 or args.t_list or args.split is not None:
            raise ValueError("--method dd2 is one step with the logits head everywhere: "
                             "--steps, --t-list and --split do not apply")
        return DD2Method(args.dd_choice, args.dd_temperature)
    if name == "teacher":
        return TeacherMethod(args.teacher_choice)
    if name == "onestep":
        return OneStepMethod(args.teacher_choice, args.marginals, args.marginal_samples)
    return SkipMethod(args.skip, args.teacher_choice)


def config_from_args(args: argparse.Namespace) -> SampleConfig:
    classes = args.classes
    if classes not in ("balanced", "random"):
        try:
            classes = ints(classes)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"--classes: {e}") from e
    models = Models(args.teacher, args.tokenizer_ckpt, args.student, args.device, args.dtype,
                    args.compile, args.int8)
    return SampleConfig(models, method_from_args(args), num=args.num,
                        batch_size=args.batch_size, seed=args.seed, classes=classes,
                        captions=args.captions, flow_steps=args.flow_steps, out=args.out,
                        pngs=not args.no_pngs,
                        prompts=str(args.prompts) if args.prompts is not None else None,
                        encoder=encoder_spec(args, args.device))


def sample_command(args: argparse.Namespace) -> int:
    result = sample(config_from_args(args))
    print(f"sample: {result.label}: {len(result.index)} images, {result.steps} network passes "
          f"per image, {result.seconds_per_image:.4f} s per image (generation "
          f"{result.seconds_generate:.2f} s, VQ decoding {result.seconds_decode:.2f} s)")
    print(f"sample: wrote {args.out} (samples.npz, tokens.npz, grid.png, sample.json)")
    return 0
