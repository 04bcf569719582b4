"""`ardistill eval SAMPLES [--ref REF] [--teacher T]`: FID, Inception Score, precision and
recall against REF; with --teacher the token metrics (docs/sampling.md): the teacher's NLL of
the samples' tokens in bits per token (and of --teacher-samples, the teacher's own), and
token agreement with --flow-reference (the teacher + flow map's tokens for the same noise: a
run of `ardistill sample --method teacher --teacher-choice flow` with the same seed, or a
pairs dataset). Tokens come from the tokens.npz that `ardistill sample` writes beside SAMPLES.

SAMPLES: an ADM-layout `.npz` (`arr_0` uint8 (N, H, W, 3)) or a directory of PNGs.
REF: `mnist` (the embedded train split), an `.npz` with images and/or `mu`/`sigma` (ADM
reference batches), a directory of PNGs, or another sample set (a student's samples against
the teacher's: `ardistill eval student/samples.npz --ref teacher/samples.npz`).
Features: `--features mnist` (the shipped MNIST network) or `--features inception
--inception-weights pt_inception-2015-12-05-6726825d.pth` (never downloaded).
Prints the numbers and writes them as JSON (`--out`, default beside SAMPLES).
"""

from __future__ import annotations

import argparse
import sys

from ardistill.cli.options import add_teacher, from_args
from ardistill.evaluation.run import (
    EvalConfig,
    evaluate,
    format_result,
    format_tokens,
    result_path,
    write_result,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="image metrics (FID, IS, precision/recall) of samples",
                       description=(__doc__ or "").split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", help="samples: .npz (ADM layout) or a directory of PNGs")
    p.add_argument("--ref", default=None,
                   help="reference: 'mnist', an .npz (images and/or mu/sigma) or a PNG "
                   "directory (image metrics run only when given)")
    add_teacher(p, required=False, help="teacher preset or checkpoint: adds the token metrics "
                "(teacher NLL in bits per token)")
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


def run(args: argparse.Namespace) -> int:
    cfg = from_args(EvalConfig, args, progress=not args.no_progress)
    result_path(cfg.samples, args.out)  # a bad --out fails before the metrics are computed
    try:
        result = evaluate(cfg)
    except ImportError as e:  # an optional dependency of a metric (scipy, torchmetrics)
        raise ValueError(str(e)) from e
    if result.get("inception_weights_official") is False:
        print("ardistill: warning: the Inception weights are not the official "
              f"pt_inception-2015-12-05 file (sha256 {result['inception_weights_sha256'][:8]}"
              "...): the numbers are not comparable with published FIDs", file=sys.stderr)
    lines = [format_result(result)] if cfg.ref is not None else []
    if cfg.teacher is not None:
        lines.append(format_tokens(result))
    print("\n".join(lines))
    print(f"wrote {write_result(result, args.out)}", file=sys.stderr)
    return 0
