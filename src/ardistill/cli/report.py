"""`ardistill report RUN...`: a Table-1-style report (markdown + JSON) of sample runs.

Each RUN is a folder written by `ardistill sample` (sample.json) and, optionally, evaluated by
`ardistill eval RUN/samples.npz ...` (RUN/samples.eval.json). Columns as the paper's Table 1:
model, FID, IS, precision, recall, #param, #step, time per image, speedup; plus the token
metrics when present. The speedup is the time per image of the first teacher run listed
divided by the run's (times as `sample` measured them: the whole run, first batch included;
`ardistill bench sample` gives steady-state times). --html also writes OUT.html: one
self-contained page with the table, the quality-speed plot (FID against seconds per image, log
x, the runs with a FID) and every run's grid, inline; and the plot alone as OUT.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ardistill.evaluation.report import report_paths, table1, to_markdown, write_report
from ardistill.utils.locks import check_output_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="Table-1-style report of sample runs (markdown + JSON)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="folders written by `ardistill sample`")
    p.add_argument("--out", type=Path, default=Path("report"),
                   help="writes OUT.md and OUT.json (default: report)")
    p.add_argument("--html", action="store_true",
                   help="also OUT.html (the table, the quality-speed plot and the grids, inline) "
                   "and OUT.png (the plot)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in report_paths(args.out, args.html):  # a bad --out fails before runs are read
        check_output_path(path, what="report output", is_file=True)
    report = table1(args.runs)
    print(to_markdown(report), end="")
    paths = write_report(report, args.out, html=args.html)
    if args.html:
        print(f"report: {paths[2]}")
    return 0
