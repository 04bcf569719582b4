"""Visual reports: the quality-speed plot and the self-contained report.html of
`ardistill report --html` and of the demo."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ardistill.cli import main
from ardistill.demo.report import finish_rows, make_row, write_report
from ardistill.evaluation.html import Table, html_page, plot_points, quality_speed_png
from ardistill.utils.images import save_grid


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


POINTS = [{"label": "teacher", "group": "a", "fid": 2.0, "seconds_per_image": 0.5},
          {"label": "DD 1-step", "group": "a", "fid": 3.0, "seconds_per_image": 0.01},
          {"label": "teacher", "group": "b", "fid": 1.5, "seconds_per_image": 0.2}]


def test_quality_speed_plot_draws_every_point():
    img = _png(quality_speed_png(POINTS))
    assert img.shape[0] > 300 and img.shape[1] > 500 and img.std() > 10
    # moving one point changes the picture; the same points give the same picture
    moved = [dict(p) for p in POINTS]
    moved[1]["fid"] = 1.0
    assert not np.array_equal(img, _png(quality_speed_png(moved)))
    assert np.array_equal(img, _png(quality_speed_png(POINTS)))
    with pytest.raises(ValueError, match="no point"):
        quality_speed_png([])


def test_plot_points_skip_rows_without_fid_or_time():
    rows = [{"label": "x", "fid": 1.0, "seconds_per_image": 0.1, "teacher": "t"},
            {"label": "y", "fid": None, "seconds_per_image": 0.1},
            {"label": "z", "fid": float("nan"), "seconds_per_image": 0.1},
            {"label": "w", "fid": 1.0, "seconds_per_image": 0.0}]
    assert plot_points(rows) == [{"label": "x", "group": "t", "fid": 1.0,
                                  "seconds_per_image": 0.1}]


def test_html_page_is_self_contained_and_escaped():
    grid = quality_speed_png(POINTS[:1])
    page = html_page("t <1>", "<p>intro</p>", [Table("c", ["a", "b"], [["<x>", "1"]])],
                     [("grid & co", grid)], grid)
    assert "&lt;x&gt;" in page and "<x>" not in page and "grid &amp; co" in page
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:|/|file:)", page)
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 2 and _png(base64.b64decode(imgs[0])).shape == _png(grid).shape


def _run(folder, teacher, label, method, sec, fid=None):
    folder.mkdir(parents=True)
    (folder / "sample.json").write_text(json.dumps({
        "method": method, "label": label, "steps": 1, "num": 4, "seconds_per_image": sec,
        "settings": {"parameters": 10, "models": {"teacher": teacher}}}))
    if fid is not None:
        (folder / "samples.eval.json").write_text(json.dumps({"fid": fid, "recall": 0.5}))
    save_grid(torch.full((4, 3, 8, 8), 200, dtype=torch.uint8), folder / "grid.png", nrow=2)
    return str(folder)


def test_report_html_cli(tmp_path, capsys):
    runs = [_run(tmp_path / "ta", "A", "teacher (multinomial)", "teacher", 0.4, 2.0),
            _run(tmp_path / "da", "A", "DD 1-step", "dd", 0.01, 2.5),
            _run(tmp_path / "tb", "B", "teacher (multinomial)", "teacher", 0.2, 1.0),
            _run(tmp_path / "db", "B", "DD 1-step", "dd", 0.1)]
    assert main(["report", *runs, "--out", str(tmp_path / "rep"), "--html"]) == 0
    assert f"report: {tmp_path / 'rep.html'}" in capsys.readouterr().out
    rows = json.loads((tmp_path / "rep.json").read_text())["rows"]
    # each teacher's runs are timed against that teacher's run
    assert [r["speedup"] for r in rows] == pytest.approx([1.0, 40.0, 1.0, 2.0])
    page = (tmp_path / "rep.html").read_text()
    assert page.count("data:image/png;base64,") == 5  # the plot and four grids
    assert 'id="quality-speed"' in page and "<td>B</td>" in page
    assert _png((tmp_path / "rep.png").read_bytes()).std() > 10  # the plot alone
    # without --html no page is written
    assert main(["report", *runs, "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain.html").exists() and not (tmp_path / "plain.png").exists()


def test_demo_report_writes_html_and_plot(tmp_path):
    rows = finish_rows([
        make_row("mnist-x", "teacher", "teacher", 8, {"fid": 2.0, "num_samples": 10},
                 {"seconds_per_image": 0.2}, 100),
        make_row("mnist-x", "dd1", "dd", 1, {"fid": 3.0, "num_samples": 10, "recall": 0.4},
                 {"seconds_per_image": 0.01}, 90)])
    grid = quality_speed_png(POINTS)
    write_report(tmp_path, rows, {"preset": "quick", "seed": 0, "threads": 1}, {"total": 1.0},
                 grids=[("mnist-x: dd1", grid)])
    page = (tmp_path / "report.html").read_text()
    assert "<td>DD 1-step</td>" in page and "<td>20.0x</td>" in page and "<td>1.50x</td>" in page
    assert page.count("data:image/png;base64,") == 2
    plot = _png((tmp_path / "quality_speed.png").read_bytes())
    assert plot.std() > 10
