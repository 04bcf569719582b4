"""`ardistill eval SAMPLES [--ref REF] [--teacher T]`: FID, Inception Score, precision and
recall against REF; with --teacher the token metrics (docs/sampling.md): the teacher's NLL of
the samples' tokens in bits per token (and of --teacher-samples, the teacher's own), and
token agreement with --flow-reference (the teacher + flow map's tokens for the same noise: a
run of `ardistill sample --method teacher --teacher-choice flow` with the same seed, or a
pairs dataset). Tokens come from the tokens.npz that `ardistill sample` writes beside SAMPLES.

SAMPLES: an ADM-layout `.npz` (`arr_0` uint8 (N, H, W, 3)) or a directory of PNGs.
REF: `mnist` (the embedded train split), an `.npz` with images and/or `mu`/`sigma` (ADM
reference batches), or a directory of PNGs.
Features: `--features mnist` (the shipped MNIST network) or `--features inception
--inception-weights pt_inception-2015-12-05-6726825d.pth` (never downloaded).
Prints the numbers and writes them as JSON (`--out`, default beside SAMPLES).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ardistill.cli import CLIError
from ardistill.utils.checkpoint import CheckpointError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="image metrics (FID, IS, precision/recall) of samples",
                       description=(__doc__ or "").split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", help="samples: .npz (ADM layout) or a directory of PNGs")
    p.add_argument("--ref", default=None,
                   help="reference: 'mnist', an .npz (images and/or mu/sigma) or a PNG "
                   "directory (image metrics run only when given)")
    p.add_argument("--teacher", default=None, help="teacher preset or checkpoint: adds the "
                   "token metrics (teacher NLL in bits per token)")
    p.add_argument("--tokenizer-ckpt", default=None, help="VQ checkpoint (official presets)")
    p.add_argument("--flow-reference", default=None, help="tokens of the teacher + flow map "
                   "for the same noise (a sample run folder or a pairs dataset): token agreement")
    p.add_argument("--teacher-samples", default=None, help="a sample run of the teacher: its "
                   "own NLL, printed next to the samples' (needs --teacher)")
    p.add_argument("--features", choices=("mnist", "inception"), default="mnist",
                   help="feature network (default: mnist, the shipped one)")
    p.add_argument("--inception-weights", default=None,
                   help="path of pt_inception-2015-12-05-6726825d.pth (for --features inception)")
    p.add_argument("--out", default=None,
                   help="JSON output (default: SAMPLES.eval.json, or SAMPLES/eval.json for a dir)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu", help="torch device for the feature network")
    p.add_argument("--is-splits", type=int, default=10, help="Inception Score splits (10)")
    p.add_argument("--pr-k", type=int, default=3, help="k of precision/recall (3)")
    p.add_argument("--fid-method", choices=("eigh", "sqrtm"), default="eigh",
                   help="trace of the matrix square root: eigh (fast, default) or sqrtm (the "
                        "pytorch-fid / ADM code path); equal up to rounding")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def default_out(samples: Path) -> Path:
    return samples / "eval.json" if samples.is_dir() else samples.with_suffix(".eval.json")


def format_result(r: dict) -> str:
    """The human-readable lines `ardistill eval` prints."""

    def num(v, fmt=".4f"):
        return "n/a" if v is None else format(v, fmt)

    is_text = "n/a"
    if r["inception_score"] is not None:
        is_text = (f"{r['inception_score']:.4f} +- {r['inception_score_std']:.4f} "
                   f"({r['is_splits']} splits)")
    n_ref = "statistics only" if r["num_reference"] is None else f"{r['num_reference']} images"
    return "\n".join([
        f"samples    {r['num_samples']} images",
        f"reference  {r['reference']} ({n_ref}; FID from {r['fid_reference']})",
        f"features   {r['features']}",
        f"FID        {num(r['fid'])}",
        f"IS         {is_text}",
        f"precision  {num(r['precision'])}   (k={r['pr_k']})",
        f"recall     {num(r['recall'])}",
    ])


def run(args: argparse.Namespace, load=None) -> int:
    """load: a `sampling.models.TeacherLoader` for --teacher (tests pass tiny teachers)."""
    if args.ref is None and args.teacher is None:
        raise CLIError("nothing to evaluate: give --ref (image metrics) and/or --teacher "
                       "(token metrics)")
    if args.features == "inception" and not args.inception_weights and args.ref is not None:
        raise CLIError("--features inception needs --inception-weights PATH "
                       "(pt_inception-2015-12-05-6726825d.pth; ardistill never downloads it)")
    if args.teacher is None and (args.flow_reference or args.teacher_samples):
        raise CLIError("--flow-reference and --teacher-samples need --teacher")
    samples_path = Path(args.samples)
    result: dict = {"samples": str(samples_path)}
    try:
        if args.ref is not None:
            result.update(_image_metrics(args, samples_path))
        if args.teacher is not None:
            result.update(_token_metrics(args, samples_path, load))
    except (FileNotFoundError, ValueError, KeyError, CheckpointError, ImportError) as e:
        raise CLIError(str(e)) from e
    lines = [format_result(result)] if args.ref is not None else []
    if args.teacher is not None:
        lines.append(format_tokens(result))
    print("\n".join(lines))
    out = Path(args.out) if args.out else default_out(samples_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def format_tokens(r: dict) -> str:
    def num(v, fmt=".4f"):
        return "n/a" if v is None else format(v, fmt)

    quarters = r.get("token_agreement_by_quarter")
    q = "" if not quarters else " (by quarter of the steps: " + \
        ", ".join(f"{x:.3f}" for x in quarters) + ")"
    return "\n".join([
        f"teacher NLL       {num(r['teacher_nll_bits'])} bits/token "
        f"(teacher's own samples: {num(r['teacher_samples_nll_bits'])})",
        f"token agreement   {num(r['token_agreement'])}{q}",
    ])


def _image_metrics(args: argparse.Namespace, samples_path: Path) -> dict:
    from ardistill.sampling.evaluate import evaluate_images, load_reference
    from ardistill.utils.images import load_images
    from ardistill.zoo.features import load_feature_extractor

    extractor = load_feature_extractor(args.features, inception_weights=args.inception_weights,
                                       device=args.device)
    samples, _ = load_images(samples_path)
    reference = load_reference(args.ref)
    result = evaluate_images(samples, reference, extractor, batch_size=args.batch_size,
                             is_splits=args.is_splits, pr_k=args.pr_k,
                             fid_method=args.fid_method, progress=not args.no_progress)
    sha = getattr(extractor, "weights_sha256", None)
    if sha is not None:
        result["inception_weights_sha256"] = sha
        from ardistill.metrics.inception import OFFICIAL_SHA256_PREFIX

        if not sha.startswith(OFFICIAL_SHA256_PREFIX):
            print("ardistill: warning: the Inception weights are not the official "
                  f"pt_inception-2015-12-05 file (sha256 {sha[:8]}...): the numbers are not "
                  "comparable with published FIDs", file=sys.stderr)
    return result


def _token_metrics(args: argparse.Namespace, samples_path: Path, load) -> dict:
    import torch

    from ardistill.sampling.models import load_teacher_from_spec
    from ardistill.sampling.token_eval import read_tokens, token_metrics

    teacher = (load or load_teacher_from_spec)(args.teacher, args.tokenizer_ckpt,
                                               torch.device(args.device), torch.float32)
    ref = read_tokens(args.flow_reference) if args.flow_reference else None
    own = read_tokens(args.teacher_samples) if args.teacher_samples else None
    return token_metrics(teacher, read_tokens(samples_path), flow_reference=ref,
                         teacher_samples=own, batch_size=args.batch_size)
