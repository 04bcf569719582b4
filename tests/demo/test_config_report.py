"""DemoConfig validation and the report writer (no models: fast)."""

from __future__ import annotations

import json
import math

import pytest

from ardistill.demo.config import DemoConfig, StudentSettings
from ardistill.demo.report import (
    METHODS,
    check_rows,
    finish_rows,
    make_row,
    markdown,
    quality,
    write_report,
)


def test_presets_validate_and_quick_is_smaller():
    full, quick = DemoConfig.full(), DemoConfig.quick()
    assert full.preset == "full" and quick.preset == "quick"
    assert quick.pairs < full.pairs and quick.eval_samples < full.eval_samples
    assert quick.one_step.steps < full.one_step.steps
    assert full.skip_k("llamagen") >= 1 and full.skip_k("var") >= 1
    assert json.loads(json.dumps(full.to_json()))["teachers"] == list(full.teachers)


@pytest.mark.parametrize("kw, needle", [
    (dict(teachers=()), "teachers"),
    (dict(teachers=("mnist-var", "mnist-var")), "teachers"),
    (dict(threads=0), "threads"),
    (dict(pairs=4), "pairs"),
    (dict(eval_samples=3), "eval_samples"),
    (dict(choice="argmax"), "choice"),
    (dict(skip=(("gpt", 2),)), "skip"),
    (dict(skip=(("var", 0),)), "skip"),
    (dict(one_step=StudentSettings(steps=0)), "one_step"),
    (dict(two_step=StudentSettings(steps=10, lr=0.0)), "two_step"),
    (dict(two_step=StudentSettings(steps=10, ce=0.0, latent=0.0)), "two_step"),
    (dict(bench_repeats=0), "bench_repeats"),
    (dict(out=""), "out"),
])
def test_bad_config_raises_naming_the_field(kw, needle):
    with pytest.raises(ValueError, match=needle):
        DemoConfig.quick().replace(**kw)


def test_skip_k_unknown_family():
    with pytest.raises(ValueError, match="family"):
        DemoConfig.quick().replace(skip=(("var", 1),)).skip_k("llamagen")


def _rows():
    m = lambda fid, agree: {"fid": fid, "agreement": agree, "nll": 3.0, "num_samples": 100,  # noqa: E731
                            "inception_score": 9.0, "precision": 0.8, "recall": 0.7}
    b = lambda s: {"seconds_per_image": s}  # noqa: E731
    rows = [make_row("mnist-x", "teacher", "teacher", 64, m(2.0, 1.0), b(0.2), 1000),
            make_row("mnist-x", "dd-1", "dd", 1, m(4.0, 0.4), b(0.01), 1100),
            make_row("mnist-x", "dd-2", "dd", 2, m(3.0, 0.5), b(0.02), 1100),
            make_row("mnist-x", "onestep*", "onestep*", 1, m(60.0, 0.01), b(0.005), 0),
            make_row("mnist-x", "skip-26", "skip-k", 38, m(20.0, 0.3), b(0.1), 1000),
            make_row("mnist-x", "dd2-shipped", "dd2", 1, m(3.5, 0.3), b(0.01), 1100)]
    return finish_rows(rows)


def test_rows_ratios_and_quality():
    rows = _rows()
    assert {r["method"] for r in rows} == set(METHODS)
    dd1 = rows[1]
    assert dd1["fid_ratio"] == pytest.approx(2.0) and dd1["speedup"] == pytest.approx(20.0)
    assert rows[0]["speedup"] == pytest.approx(1.0) and rows[0]["fid_ratio"] == 1.0
    q = quality(rows)["mnist-x"]
    assert q["dd1_meets_floor"] and q["dd1_meets_aim"]
    assert q["dd2_fid_ratio"] == pytest.approx(1.5) and q["dd2_meets_floor"]
    assert q["dd1_vs_onestep_fid"] == pytest.approx(15.0)


def test_write_report_files(tmp_path):
    rows = _rows()
    md, js = write_report(tmp_path / "r", rows, {"preset": "quick", "seed": 0, "threads": 1},
                          {"mnist-x/pairs": 1.5, "total": 9.0}, extra={"environment": {}})
    doc = json.loads(js.read_text())
    assert [r["method"] for r in doc["rows"]] == ["teacher", "dd", "dd", "onestep*", "skip-k",
                                                  "dd2"]
    assert "| mnist-x | DD2 1-step (shipped) | 1 |" in md.read_text()
    for r in doc["rows"]:
        assert r["teacher"] == "mnist-x"
        for k in ("steps", "fid", "seconds_per_image", "speedup", "agreement", "nll", "params"):
            assert r[k] is not None and math.isfinite(float(r[k]))
    assert doc["settings"]["preset"] == "quick" and doc["timings"]["total"] == 9.0
    text = md.read_text()
    assert "| mnist-x | DD 1-step | 1 | 4.00 | 2.00x |" in text
    assert "1-step 2.00x (floor 2.5x: met)" in text and "| total | 9.0 | - |" in text


def test_bad_rows_raise():
    rows = _rows()
    bad = dict(rows[1], method="dd-1")
    with pytest.raises(ValueError, match="method"):
        check_rows([bad])
    with pytest.raises(ValueError, match="lacks"):
        check_rows([{k: v for k, v in rows[1].items() if k != "speedup"}])
    with pytest.raises(ValueError, match="no teacher row"):
        finish_rows([dict(rows[1])])
    with pytest.raises(ValueError, match="method"):
        make_row("t", "x", "fast", 1, {"fid": 1.0, "num_samples": 1}, {"seconds_per_image": 1}, 0)
    assert "FID" in markdown(rows, {}, {})


def test_split_choice():
    assert DemoConfig.full().split == "logits"
    assert DemoConfig.quick().replace(split="preset").split == "preset"
    with pytest.raises(ValueError, match="split"):
        DemoConfig.quick().replace(split="continuous")


def test_shipped_fidelity_table_from_the_records(tmp_path):
    """The demo's table of the shipped students reads their records (2,000-sample fidelity
    measured when they shipped), with ratios to the recorded teacher row."""
    from ardistill.demo.report import shipped_fidelity, shipped_markdown

    teacher = {"fid": 2.0, "fid_std": 0.1, "precision": 0.8, "recall": 0.5,
               "class_accuracy": 0.99, "num_samples": 2000}
    student = {**teacher, "fid": 2.2, "recall": 0.45}
    (tmp_path / "mnist_x_students.json").write_text(json.dumps({"files": {
        "2": {"name": "old demo entry, no fidelity"},
        "dd1-2step": {"fidelity": {"teacher": teacher, "dd2": student}},
        "dd1-1step": {"fidelity": {"teacher": teacher, "dd1": student}, "dd_choice": "flow"}}}))
    rows = shipped_fidelity(["mnist-x", "mnist-none"], weights=tmp_path)
    assert [r["student"] for r in rows] == ["teacher", "DD 1-step (flow)", "DD 2-step"]
    assert rows[1]["fid_ratio"] == pytest.approx(1.1) and rows[1]["recall_ratio"] == \
        pytest.approx(0.9)
    text = "\n".join(shipped_markdown(rows))
    assert "| mnist-x | DD 1-step (flow) | 2000 | 2.200 +- 0.100 | 1.10x |" in text
    assert "not re-measured by this run" in text
    assert shipped_markdown([]) == []
