"""The Table-1 report of sample runs (`table1`, `to_markdown`, `write_report`): one row per
run folder of `ardistill sample` (+ its samples.eval.json); columns and the speedup rule are
documented where the command is (`ardistill.cli.report`)."""

from __future__ import annotations

import json
from pathlib import Path

from ardistill.errors import DataFileError
from ardistill.evaluation.html import Table, html_page, plot_points, quality_speed_png
from ardistill.utils.files import atomic_write_bytes, atomic_write_json
from ardistill.utils.locks import check_output_path, output_folder

COLUMNS = ("model", "fid", "inception_score", "precision", "recall", "parameters", "steps",
           "seconds_per_image", "speedup", "teacher_nll_bits", "token_agreement")
HEADERS = ("model", "FID", "IS", "Prec", "Rec", "#Param", "#Step", "Time (s)", "Speedup",
           "NLL (bits/tok)", "Tok. agree")


def read_run(run: str | Path) -> dict:
    """One row: sample.json (+ samples.eval.json when present) of a run folder."""
    run = Path(run)
    meta_path = run / "sample.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{run}: no sample.json (not a folder of `ardistill sample`)")
    meta = _read_json(meta_path)
    try:
        models = meta["settings"].get("models") or {}
        row = {"run": str(run), "model": meta["label"], "method": meta["method"],
               "teacher": models.get("teacher") if isinstance(models, dict) else None,
               "parameters": meta["settings"].get("parameters"), "steps": meta["steps"],
               "seconds_per_image": meta["seconds_per_image"], "num": meta["num"]}
    except (KeyError, AttributeError, TypeError) as e:
        raise DataFileError(f"{meta_path}: not a sample.json of `ardistill sample` (missing "
                            f"{e})") from e
    ev = run / "samples.eval.json"
    if ev.is_file():
        e = _read_json(ev)
        for k in ("fid", "inception_score", "precision", "recall", "teacher_nll_bits",
                  "token_agreement", "features"):
            row[k] = e.get(k)
    return row


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise DataFileError(f"{path}: expected a JSON object")
    return obj


def report_paths(out: Path, html: bool = False) -> list[Path]:
    """OUT.md, OUT.json (and OUT.html, OUT.png: the page and its quality-speed plot)."""
    return [out.with_suffix(s) for s in (".md", ".json", ".html", ".png")[:4 if html else 2]]


def write_report(report: dict, out: Path, html: bool = False) -> list[Path]:
    """OUT.md and OUT.json (and OUT.html with `html`), atomically, holding OUT's folder's
    lock."""
    paths = report_paths(out, html)
    for p in paths:
        check_output_path(p, what="report output", is_file=True)
    with output_folder(out.parent, what="report folder"):
        atomic_write_bytes(paths[0], to_markdown(report).encode())
        atomic_write_json(paths[1], report, indent=2, sort_keys=False)
        if html:
            plot = quality_speed(report)
            atomic_write_bytes(paths[2], to_html(report, plot).encode("utf-8"))
            if plot is not None:
                atomic_write_bytes(paths[3], plot)
            else:
                paths = paths[:3]
    return paths


def table1(runs: list[str | Path]) -> dict:
    """{"rows": [...], "teacher_run": str | None}; each row's speedup is against the first
    teacher run of the same teacher (runs of several teachers in one report), else against
    the first teacher run listed."""
    rows = [read_run(r) for r in runs]
    teachers = [r for r in rows if r["method"] == "teacher"]
    first = teachers[0] if teachers else None
    for r in rows:
        base = next((t for t in teachers if t.get("teacher") == r.get("teacher")), first)
        r["speedup"] = (base["seconds_per_image"] / r["seconds_per_image"]
                        if base and r["seconds_per_image"] > 0 else None)
    return {"rows": rows, "teacher_run": None if first is None else first["run"]}


def _cell(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "parameters":
        return f"{v / 1e6:.2f}M"
    if key == "speedup":
        return f"{v:.1f}x"
    if key == "seconds_per_image":
        return f"{v:.4f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def to_markdown(report: dict) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in report["rows"]:
        lines.append("| " + " | ".join(_cell(k, r.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def quality_speed(report: dict) -> bytes | None:
    """The quality-speed plot of the runs with a FID (PNG bytes), None without any."""
    points = plot_points([{**r, "label": r["model"]} for r in report["rows"]],
                         group_key="teacher")
    return quality_speed_png(points) if points else None


def to_html(report: dict, plot: bytes | None = None) -> str:
    """The self-contained report.html: the table, the quality-speed plot (`plot`, else drawn
    from the runs with a FID) and each run's grid.png, inline."""
    rows = report["rows"]
    table = Table("Table 1", ["teacher", *HEADERS],
                  [[str(r.get("teacher") or "-")] + [_cell(k, r.get(k)) for k in COLUMNS]
                   for r in rows])
    grids = []
    for r in rows:
        grid = Path(r["run"]) / "grid.png"
        if grid.is_file():
            grids.append((f"{r['model']} ({r['run']})", grid.read_bytes()))
    intro = ("<p>Rows: runs of <code>ardistill sample</code>, with their "
             "<code>ardistill eval</code> metrics where present. Speedup: time per image of "
             "the first teacher run divided by the run's (as <code>sample</code> measured "
             "them).</p>")
    return html_page("ardistill report", intro, [table], grids,
                     plot if plot is not None else quality_speed(report))
