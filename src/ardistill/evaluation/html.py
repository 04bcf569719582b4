"""Visual reports: the quality-speed plot (FID against seconds per image, log x, one point per
method) and a self-contained `report.html` (tables, grids and the plot inline as base64 PNGs;
no script, no external file), for `ardistill report --html` and `ardistill demo`.

    png = quality_speed_png([{"label": "teacher", "group": "mnist-var", "fid": 2.1,
                              "seconds_per_image": 0.05}, ...])
    html = html_page("title", "<p>how it was measured</p>", [Table(...)], [("grid", png)], png)

matplotlib (the field's plotting library) draws with its Agg backend, off screen.
"""

from __future__ import annotations

import base64
import html as _html
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ardistill.utils.files import atomic_write_bytes


@dataclass
class Table:
    """caption: a line above the table; headers: column titles; rows: cells, already text."""

    caption: str
    headers: list[str]
    rows: list[list[str]]


def plot_points(rows: list[dict], group_key: str = "teacher") -> list[dict]:
    """The plottable points of report rows: those with a finite FID and a positive time."""
    out = []
    for r in rows:
        fid, sec = r.get("fid"), r.get("seconds_per_image")
        if fid is None or sec is None or not math.isfinite(fid) or not sec > 0:
            continue
        out.append({"label": str(r.get("label") or r.get("model") or r.get("method")),
                    "group": str(r.get(group_key) or ""), "fid": float(fid),
                    "seconds_per_image": float(sec)})
    return out


def quality_speed_png(points: list[dict], title: str = "Quality against speed") -> bytes:
    """PNG bytes of FID (lower is better) against seconds per image (log x): one marker per
    point, labelled, one colour per group."""
    if not points:
        raise ValueError("no point to plot: every row lacks a FID or a time")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.4), dpi=110)
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(p["group"] for p in points))
    markers = "osD^v<>"
    for gi, g in enumerate(groups):
        mine = [p for p in points if p["group"] == g]
        ax.scatter([p["seconds_per_image"] for p in mine], [p["fid"] for p in mine],
                   s=46, marker=markers[gi % len(markers)], label=g or None, zorder=3)
        for p in mine:
            ax.annotate(p["label"], (p["seconds_per_image"], p["fid"]), fontsize=7.5,
                        xytext=(5, 4), textcoords="offset points")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    # minor ticks labelled at 2 and 5 only (0.02, 0.05, ...): readable, never overlapping
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_xlabel("seconds per image (log scale)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if any(groups):
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_html.escape(alt)}" src="data:image/png;base64,{data}">'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f3f3f3} figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figcaption{font-size:.85em;color:#555} figure img{image-rendering:pixelated;width:224px}
.plot img{width:auto;max-width:100%;image-rendering:auto}
"""


def html_page(title: str, intro_html: str, tables: list[Table],
              grids: list[tuple[str, bytes]], plot_png: bytes | None) -> str:
    """A self-contained HTML page. intro_html is trusted markup (written by us); every table
    cell and caption is escaped."""
    esc = _html.escape
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{esc(title)}</h1>", intro_html]
    for t in tables:
        parts.append(f"<h2>{esc(t.caption)}</h2><table><thead><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in t.headers) + "</tr></thead><tbody>")
        for row in t.rows:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    if plot_png is not None:
        parts.append('<h2>Quality against speed</h2><figure class="plot" id="quality-speed">'
                     + _img(plot_png, "FID against seconds per image")
                     + "<figcaption>FID against seconds per image (log x), one point per "
                     "method</figcaption></figure>")
    if grids:
        parts.append("<h2>Samples</h2>")
        for caption, png in grids:
            parts.append(f'<figure class="grid">{_img(png, caption)}'
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(path: str | Path, page: str) -> Path:
    path = Path(path)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
