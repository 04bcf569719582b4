"""`ardistill app`: a local web page (gradio) that shows a teacher and its students side by
side: pick a teacher, classes (or a caption file), seed, count and methods (teacher, DD 1- and
2-step, teacher-involved, onestep*, skip-k, DD2); every method gets the same noise, and each
panel shows its seconds per image and speedup over the teacher. Images equal those of
`ardistill sample ... --num COUNT --batch-size COUNT` for the same seed.

    ardistill app                                   # both embedded teachers, 127.0.0.1:7860
    ardistill app --teacher c2i_B_256.pt --tokenizer-ckpt vq_ds16_c2i.pt --student STUDENT.pt

Needs the app extra: pip install 'ardistill[app]' (gradio).
"""

from __future__ import annotations

import argparse
import importlib.util

from ardistill.app.page import AppOptions, build_page, launch
from ardistill.cli.options import add_dtype, set_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="a local web page comparing teacher and students side by "
                       "side (gradio)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--teacher", action="append", default=None, metavar="SPEC",
                   help="a teacher of the menu: preset, model checkpoint or module:function "
                   "factory; repeat for several (default: mnist-llamagen, mnist-var and mnist-t2i)")
    p.add_argument("--tokenizer-ckpt", default=None, help="VQ tokenizer checkpoint (official "
                   "presets)")
    p.add_argument("--student", default=None, help="DD 1-step student file (default: the "
                   "preset's shipped one)")
    p.add_argument("--student-2step", default=None, help="DD 2-step student file")
    p.add_argument("--student-dd2", default=None, help="DD2 1-step student file")
    p.add_argument("--device", default="cpu")
    add_dtype(p)
    p.add_argument("--int8", action="store_true",
                   help="CPU: the linear layers of LlamaGen and VAR teachers' transformers and "
                   "students in int8 (as `ardistill sample --int8`; lossy; --dtype auto then "
                   "means fp32)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: leave torch's default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("ardistill app needs gradio: pip install 'ardistill[app]'")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    set_threads(args.threads)
    students = tuple((k, v) for k, v in (("DD 1-step", args.student),
                                         ("DD 2-step", args.student_2step),
                                         ("DD2 1-step", args.student_dd2)) if v)
    opts = AppOptions(tuple(args.teacher or ("mnist-llamagen", "mnist-var", "mnist-t2i")),
                      args.tokenizer_ckpt, students, args.device, args.dtype, args.int8)
    print(f"app: serving on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    launch(build_page(opts), args.host, args.port)
    return 0
