"""The demo's report: rows shaped like the paper's Table 1, as `report.json` and `report.md`.

A row is a plain dict with at least `teacher`, `method` (one of METHODS), `steps`, `fid`,
`seconds_per_image`, `speedup` (teacher seconds / method seconds, same run), plus `label`,
`fid_ratio` (method FID / teacher FID), `agreement`, `nll`, `params`. Pure functions: rows in,
text and files out (unit-tested without any model).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ardistill.demo.text import text_markdown
from ardistill.evaluation.html import Table, html_page, plot_points, quality_speed_png
from ardistill.utils.files import atomic_write_bytes
from ardistill.weights import shipped_dir, student_record_name

METHODS = ("teacher", "dd", "dd2", "onestep*", "skip-k")
# methods every teacher's rows have (DD2 only where a DD2 student ships: the demo trains none)
REQUIRED_METHODS = ("teacher", "dd", "onestep*", "skip-k")
REQUIRED = ("teacher", "method", "steps", "fid", "seconds_per_image", "speedup")
# The demo's quick-trained students: DD FID at most this multiple of the teacher's (the paper's
# students: 2.4-2.8x at 1 step, 1.8-1.9x at 2 steps).
FLOORS = {1: 2.5, 2: 1.8}
AIMS = {1: 2.0, 2: 1.5}


def make_row(teacher: str, key: str, method: str, steps: int, metrics: dict, bench: dict,
             params: int) -> dict:
    """One row before the ratios (`finish_rows` fills fid_ratio and speedup)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    label = {"teacher": "teacher", "onestep*": "onestep*"}.get(method, key)
    if method == "dd":
        label = f"DD {steps}-step"
    if method == "dd2":
        label = "DD2 1-step (shipped)"
    return {"teacher": teacher, "method": method, "label": label, "steps": int(steps),
            "fid": float(metrics["fid"]), "fid_ratio": None,
            "agreement": _opt(metrics.get("agreement")), "nll": _opt(metrics.get("nll")),
            "inception_score": _opt(metrics.get("inception_score")),
            "precision": _opt(metrics.get("precision")), "recall": _opt(metrics.get("recall")),
            "num_samples": int(metrics["num_samples"]), "params": int(params),
            "seconds_per_image": float(bench["seconds_per_image"]), "speedup": None}


def _opt(x) -> float | None:
    return None if x is None else float(x)


def finish_rows(rows: list[dict]) -> list[dict]:
    """Fill `fid_ratio` and `speedup` of every row from its teacher's row (same run)."""
    ref = {r["teacher"]: r for r in rows if r["method"] == "teacher"}
    for r in rows:
        t = ref.get(r["teacher"])
        if t is None:
            raise ValueError(f"no teacher row for {r['teacher']!r}")
        r["fid_ratio"] = r["fid"] / t["fid"] if t["fid"] > 0 else math.inf
        r["speedup"] = t["seconds_per_image"] / r["seconds_per_image"]
    return rows


def check_rows(rows: list[dict]) -> None:
    """Raise ValueError unless every row has the required keys and a known method."""
    for r in rows:
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(f"report row {r.get('teacher')}/{r.get('method')} lacks {missing}")
        if r["method"] not in METHODS:
            raise ValueError(f"report row method {r['method']!r} not in {METHODS}")


def quality(rows: list[dict]) -> dict:
    """Per teacher: DD 1-/2-step FID ratios to the teacher, the floors and whether they hold,
    and whether DD is better than onestep*."""
    out = {}
    for t in dict.fromkeys(r["teacher"] for r in rows):
        mine = [r for r in rows if r["teacher"] == t]
        one = next((r for r in mine if r["method"] == "onestep*"), None)
        q = {}
        for steps in (1, 2):
            dd = next((r for r in mine if r["method"] == "dd" and r["steps"] == steps), None)
            if dd is None:
                continue
            q[f"dd{steps}_fid_ratio"] = dd["fid_ratio"]
            q[f"dd{steps}_floor"] = FLOORS[steps]
            q[f"dd{steps}_meets_floor"] = bool(dd["fid_ratio"] <= FLOORS[steps])
            q[f"dd{steps}_meets_aim"] = bool(dd["fid_ratio"] <= AIMS[steps])
            if one is not None:
                q[f"dd{steps}_vs_onestep_fid"] = one["fid"] / dd["fid"] if dd["fid"] else None
        out[t] = q
    return out


_SHIPPED_ORDER = ("dd1-1step", "dd1-2step", "dd2-1step")
# Text-to-image teachers whose shipped students the report lists too: their rows are the
# Table-3 analogue (2,000 prompts balanced over the digits; class acc. = prompt accuracy).
TEXT_TEACHERS = ("mnist-t2i",)


def shipped_fidelity(teachers: list[str], weights: Path | None = None) -> list[dict]:
    """The fidelity the shipped students' records hold (measured by scripts/fidelity.py when
    they shipped: 2,000 samples, seed 11, `eval --ref mnist`), per teacher: its teacher row,
    then one row per shipped student with a record; ratios to that teacher row."""
    folder = Path(weights) if weights is not None else shipped_dir()
    rows = []
    for t in teachers:
        path = folder / student_record_name(t)
        if not path.is_file():
            continue
        files = json.loads(path.read_text()).get("files", {})
        entries = [(k, files[k]) for k in _SHIPPED_ORDER if (files.get(k) or {}).get("fidelity")]
        if not entries:
            continue
        teacher_row = entries[0][1]["fidelity"]["teacher"]
        rows.append({"teacher": t, "student": "teacher", **_fid_cells(teacher_row, teacher_row)})
        for key, e in entries:
            fid = {k: v for k, v in e["fidelity"].items() if k != "teacher"}
            (_, row), = fid.items()
            method, steps = key.split("-")
            label = f"{'DD2' if method == 'dd2' else 'DD'} {steps.replace('step', '-step')}"
            choice, temp = e.get("dd_choice", "argmax"), e.get("dd_temperature")
            label += ("" if choice == "argmax" else f" ({choice})" if temp in (None, 1.0)
                      else f" ({choice}, T {temp:g})")
            rows.append({"teacher": t, "student": label, **_fid_cells(row, teacher_row)})
    return rows


def _fid_cells(row: dict, teacher: dict) -> dict:
    return {"fid": row["fid"], "fid_std": row.get("fid_std"),
            "fid_ratio": row["fid"] / teacher["fid"], "precision": row.get("precision"),
            "recall": row.get("recall"), "recall_ratio": (row["recall"] / teacher["recall"]
                                                          if row.get("recall") is not None
                                                          and teacher.get("recall") else None),
            "class_accuracy": row.get("class_accuracy"), "num_samples": row.get("num_samples")}


def shipped_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## The shipped students (`ardistill sample`'s defaults), as recorded when "
             "they shipped", "",
             "Measured by `scripts/fidelity.py` (2,000 samples per method, seed 11, `ardistill "
             "eval --ref mnist`), not re-measured by this run; the table above holds this run's "
             "quick-trained students.", "",
             "| teacher | student | samples | FID | FID / teacher | precision | recall | "
             "recall / teacher | class acc. |", "|---|---|---|---|---|---|---|---|---|"]
    if any(r["teacher"] in TEXT_TEACHERS for r in rows):
        lines[5:5] = [f"Text to image ({', '.join(TEXT_TEACHERS)}): 2,000 prompts balanced over "
                      "the digits (`scripts/mnist_prompts.py --seed 11`); its class acc. is the "
                      "prompt accuracy (the classifier reads the digit the prompt names).", ""]
    for r in rows:
        lines.append(f"| {r['teacher']} | {r['student']} | {r['num_samples']} | "
                     f"{r['fid']:.3f} +- {_f(r['fid_std'], '.3f')} | {r['fid_ratio']:.2f}x | "
                     f"{_f(r['precision'], '.3f')} | {_f(r['recall'], '.3f')} | "
                     f"{_f(r['recall_ratio'], '.2f')}x | {_f(r['class_accuracy'], '.4f')} |")
    return lines


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown(rows: list[dict], settings: dict, timings: dict,
             cpu: dict | None = None, shipped: list[dict] | None = None) -> str:
    """report.md: the table, the quality ratios, the shipped students' recorded fidelity, and
    how it was measured."""
    n = rows[0]["num_samples"] if rows else 0
    lines = ["# ardistill demo: Distilled Decoding on the embedded MNIST teachers", "",
             "The main table: the students this run trained quickly (the demo's own, not the "
             "shipped defaults) beside the teacher and the baselines. "
             f"Preset `{settings.get('preset')}`, seed {settings.get('seed')}, "
             f"{settings.get('threads')} thread(s). FID: shipped MNIST features, {n} samples "
             "per method against the 500 held-out MNIST digits (few samples bias FID upward: "
             "compare rows, not other papers). Agreement: fraction of tokens equal to the "
             "teacher + flow map's for the same noise. NLL: teacher's guided NLL of the "
             "sampled tokens, bits/token. Time: seconds per image at batch 1, VQ decoding "
             "included, median after warm-up; speedup = teacher time / method time.", "",
             "| teacher | method | steps | FID | FID / teacher | agreement | NLL (bits/tok) "
             "| params | s / image | speedup |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['teacher']} | {r['label']} | {r['steps']} | {r['fid']:.2f} | "
            f"{_f(r['fid_ratio'], '.2f')}x | {_f(r['agreement'], '.3f')} | "
            f"{_f(r['nll'], '.2f')} | {r['params']:,} | {r['seconds_per_image']:.4f} | "
            f"{_f(r['speedup'], '.1f')}x |")
    lines += ["", "## Quality floors of the quick-trained students (DD 1-step <= 2.5x, 2-step "
              "<= 1.8x the teacher's FID; aim 2.0x / 1.5x)", ""]
    for t, q in quality(rows).items():
        parts = []
        for s in (1, 2):
            if f"dd{s}_fid_ratio" in q:
                ok = "met" if q[f"dd{s}_meets_floor"] else "NOT met"
                parts.append(f"{s}-step {q[f'dd{s}_fid_ratio']:.2f}x (floor {FLOORS[s]}x: {ok})")
        lines.append(f"- {t}: " + "; ".join(parts))
    lines += shipped_markdown(shipped or [])
    cpu = cpu or {}
    lines += ["", "## Stage timings (seconds; CPU = this process's CPU time)", "",
              "| stage | wall | CPU |", "|---|---|---|"]
    for k, v in timings.items():
        lines.append(f"| {k} | {v:.1f} | {_f(cpu.get(k), '.1f')} |")
    return "\n".join(lines) + "\n"


def to_html(rows: list[dict], settings: dict, grids: list[tuple[str, bytes]],
            plot_png: bytes | None, shipped: list[dict] | None = None,
            text_rows: list[dict] | None = None) -> str:
    """report.html: the Table-1 rows, the quality-speed plot and the grids per method."""
    n = rows[0]["num_samples"] if rows else 0
    table = Table("Table 1 (this run's quick-trained students and the shipped ones)",
                  ["teacher", "method", "steps", "FID", "FID / teacher", "precision", "recall",
                   "agreement", "params", "s / image", "speedup"],
                  [[r["teacher"], r["label"], str(r["steps"]), f"{r['fid']:.2f}",
                    _f(r["fid_ratio"], ".2f") + "x", _f(r.get("precision"), ".3f"),
                    _f(r.get("recall"), ".3f"), _f(r["agreement"], ".3f"), f"{r['params']:,}",
                    f"{r['seconds_per_image']:.4f}", _f(r["speedup"], ".1f") + "x"]
                   for r in rows])
    intro = (f"<p>Preset <code>{settings.get('preset')}</code>, seed {settings.get('seed')}, "
             f"{settings.get('threads')} thread(s). FID: shipped MNIST features, {n} samples per "
             "method against the held-out MNIST digits (few samples bias FID upward: compare "
             "rows, not papers). Time: seconds per image at batch 1, VQ decoding included, "
             "median after warm-up; speedup = teacher time / method time.</p>")
    tables = [table]
    if shipped:
        tables.append(Table(
            "The shipped students (sample's defaults), recorded when they shipped: "
            "scripts/fidelity.py, 2,000 samples, seed 11, not re-measured by this run",
            ["teacher", "student", "samples", "FID", "FID / teacher", "precision", "recall",
             "recall / teacher", "class acc."],
            [[r["teacher"], r["student"], str(r["num_samples"]),
              f"{r['fid']:.3f} +- {_f(r['fid_std'], '.3f')}", f"{r['fid_ratio']:.2f}x",
              _f(r["precision"], ".3f"), _f(r["recall"], ".3f"),
              _f(r["recall_ratio"], ".2f") + "x", _f(r["class_accuracy"], ".4f")]
             for r in shipped]))
    if text_rows:
        tables.append(Table(
            f"Text to image: mnist-t2i and its shipped students on {text_rows[0]['num_samples']} "
            "prompts balanced over the digits (prompt acc.: the classifier reads the digit the "
            "prompt names)",
            ["method", "steps", "FID", "FID / teacher", "recall", "prompt acc.", "s / image",
             "speedup"],
            [[r["method"], str(r["steps"]), f"{r['fid']:.2f}", f"{r['fid_ratio']:.2f}x",
              _f(r["recall"], ".3f"), f"{r['prompt_accuracy']:.3f}",
              f"{r['seconds_per_image']:.4f}", f"{r['speedup']:.1f}x"] for r in text_rows]))
    return html_page("ardistill demo: Distilled Decoding on the embedded MNIST teachers", intro,
                     tables, grids, plot_png)


def write_report(out: str | Path, rows: list[dict], settings: dict, timings: dict,
                 cpu: dict | None = None, extra: dict | None = None,
                 grids: list[tuple[str, bytes]] | None = None) -> tuple[Path, Path]:
    """Write `out/report.json` ({"rows", "quality", "settings", "timings", "cpu_seconds",
    ...extra}), `out/report.md`, `out/quality_speed.png` (FID against seconds per image) and
    the self-contained `out/report.html` (grids: (caption, PNG bytes) per method); returns the
    paths of the markdown and JSON files."""
    check_rows(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the demo's teachers, then the text-to-image teacher (its students are not demo-trained)
    shipped = shipped_fidelity(list(dict.fromkeys([*(r["teacher"] for r in rows),
                                                    *TEXT_TEACHERS])))
    doc = {"rows": rows, "quality": quality(rows), "settings": settings, "timings": timings,
           "cpu_seconds": cpu or {}, "shipped_fidelity": shipped, **(extra or {})}
    js = out / "report.json"
    js.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = out / "report.md"
    text_rows = (extra or {}).get("text_to_image") or []
    text_note = (extra or {}).get("text_to_image_note")
    body = markdown(rows, settings, timings, cpu, shipped)
    more = text_markdown(text_rows)
    if text_note:
        more += ["", "## Text to image", "", f"Skipped: {text_note}"]
    if more:  # before the stage timings
        head, sep, tail = body.partition("\n## Stage timings")
        body = head.rstrip("\n") + "\n" + "\n".join(more) + "\n" + sep + tail
    md.write_text(body)
    points = plot_points(rows)
    plot = quality_speed_png(points, "Quality against speed (ardistill demo)") if points else None
    if plot is not None:
        atomic_write_bytes(out / "quality_speed.png", plot)
    atomic_write_bytes(out / "report.html",
                       to_html(rows, settings, grids or [], plot, shipped, text_rows).encode())
    return md, js
