"""`ardistill sample` / `eval` (token metrics) / `report` / `bench sample` end to end, with the
tiny teachers (tests/tiny_teachers.py) as teacher factories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ardistill.cli import main
from ardistill.sampling.run import sample
from ardistill.sampling.spec import DDMethod, Models, SampleConfig


def _sample(tiny, out, *argv):
    return main(["sample", "--teacher", "tiny_teachers:tiny_llamagen", "--out", str(out),
                 "--num", "5", "--batch-size", "2", *argv])


def test_sample_cli_writes_files_and_is_deterministic(tmp_path, tiny, student_file, capsys):
    sf = str(student_file("tiny-llamagen"))
    argv = ("--student", sf, "--steps", "2", "--t-list", "0,3", "--split", "3")
    assert _sample(tiny, tmp_path / "a", *argv) == 0
    assert "DD 2-step" in capsys.readouterr().out
    with np.load(tmp_path / "a" / "samples.npz") as f:
        assert f["arr_0"].dtype == np.uint8 and f["arr_0"].shape == (5, 8, 8, 3)
        assert f["arr_1"].tolist() == [0, 1, 2, 3, 4]  # balanced: i mod 10
        images = f["arr_0"]
    assert len(list((tmp_path / "a" / "images").glob("*.png"))) == 5
    assert (tmp_path / "a" / "grid.png").is_file()
    meta = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert meta["settings"]["t_list"] == [0, 3] and meta["steps"] == 2
    assert _sample(tiny, tmp_path / "b", *argv, "--batch-size", "5") == 0
    with np.load(tmp_path / "b" / "samples.npz") as f:
        assert np.array_equal(f["arr_0"], images)
    with np.load(tmp_path / "a" / "tokens.npz") as a, np.load(tmp_path / "b" / "tokens.npz") as b:
        assert np.array_equal(a["tokens"], b["tokens"])


def test_sample_cli_classes_and_errors(tmp_path, tiny, capsys):
    assert _sample(tiny, tmp_path / "c", "--method", "teacher", "--teacher-choice", "greedy",
                   "--classes", "3,7", "--no-pngs") == 0
    with np.load(tmp_path / "c" / "samples.npz") as f:
        assert f["arr_1"].tolist() == [3, 7, 3, 7, 3]
    assert _sample(tiny, tmp_path / "d", "--method", "teacher", "--classes", "3,70") == 2
    assert "outside" in capsys.readouterr().err
    assert _sample(tiny, tmp_path / "e") == 2  # a teacher of no preset has no shipped student
    assert "no shipped DD student" in capsys.readouterr().err


@pytest.mark.slow  # flow-mapped teacher runs: ~6 min on the loaded 2-core machine
def test_eval_token_metrics_and_report(tmp_path, tiny, capsys):
    assert _sample(tiny, tmp_path / "flow", "--method", "teacher", "--teacher-choice",
                   "flow") == 0
    assert _sample(tiny, tmp_path / "skip", "--method", "skip", "--skip", "4",
                   "--teacher-choice", "flow") == 0
    for run in ("flow", "skip"):
        assert main(["eval", str(tmp_path / run / "samples.npz"), "--teacher",
                     "tiny_teachers:tiny_llamagen", "--flow-reference", str(tmp_path / "flow"),
                     "--teacher-samples", str(tmp_path / "flow")]) == 0
    out = capsys.readouterr().out
    assert "token agreement   1.0000" in out  # the flow-mapped teacher agrees with itself
    flow = json.loads((tmp_path / "flow" / "samples.eval.json").read_text())
    skip = json.loads((tmp_path / "skip" / "samples.eval.json").read_text())
    assert flow["teacher_nll_bits"] == pytest.approx(flow["teacher_samples_nll_bits"])
    assert np.isfinite(skip["teacher_nll_bits"]) and skip["teacher_nll_bits"] > 0
    q = skip["token_agreement_by_quarter"]
    assert q[0] == 1.0 and skip["token_agreement"] < 1.0  # skip-4 differs only at the end
    rc = main(["report", str(tmp_path / "flow"), str(tmp_path / "skip"),
               "--out", str(tmp_path / "table")])
    assert rc == 0
    rep = json.loads((tmp_path / "table.json").read_text())
    rows = {r["model"]: r for r in rep["rows"]}
    assert rows["teacher (flow)"]["speedup"] == pytest.approx(1.0)
    assert rows["skip-4"]["steps"] == 12 and rows["skip-4"]["parameters"] > 0
    assert "| skip-4 |" in (tmp_path / "table.md").read_text()


@pytest.mark.slow  # ~2 min on the loaded 2-core machine
def test_bench_sample_runs_on_the_embedded_shapes(tmp_path, capsys):
    rc = main(["bench", "--presets", "mnist-var", "--quick", "--no-teacher",
               "--json", str(tmp_path / "b.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "DD 1-step" in out and "gen s/img" in out
    rows = json.loads((tmp_path / "b.json").read_text())
    assert {r["batch"] for r in rows} == {1, 2}
    assert all(r["total_s_per_image"] > 0 for r in rows)


def _caption_file(path, rows=3):
    g = np.random.default_rng(0)
    mask = np.zeros((rows, 6), dtype=bool)
    for r in range(rows):
        mask[r, 6 - (r + 2):] = True  # left-padded
    cap = (3 * g.standard_normal((rows, 6, 12)) * mask[..., None]).astype(np.float32)
    np.savez(path, caption=cap, caption_mask=mask)
    return str(path)


def test_sample_cli_text_conditional(tmp_path, tiny, student_file, capsys):
    """A text-conditional teacher samples with --captions (rows i mod R, recorded as labels):
    DD from the student, the teacher itself, and onestep* with caption-conditioned marginals."""
    caps = _caption_file(tmp_path / "caps.npz")

    def run(out, *argv):
        return main(["sample", "--teacher", "tiny_teachers:tiny_t2i", "--out",
                     str(tmp_path / out), "--num", "5", "--batch-size", "2", "--no-pngs", *argv])

    sf = str(student_file("tiny-t2i"))
    assert run("dd", "--captions", caps, "--student", sf, "--t-list", "0", "--split", "3") == 0
    assert run("teacher", "--captions", caps, "--method", "teacher",
               "--teacher-choice", "greedy") == 0
    assert run("onestep", "--captions", caps, "--method", "onestep",
               "--marginal-samples", "4") == 0
    for out in ("dd", "teacher", "onestep"):
        with np.load(tmp_path / out / "samples.npz") as f:
            assert f["arr_0"].shape == (5, 8, 8, 3) and f["arr_1"].tolist() == [0, 1, 2, 0, 1]
        meta = json.loads((tmp_path / out / "sample.json").read_text())
        assert meta["settings"]["condition"]["kind"] == "caption"
        assert meta["settings"]["condition"]["rows"] == 3
    # greedy teacher tokens follow the caption: rows 0 and 3 share one, rows 0 and 1 do not
    with np.load(tmp_path / "teacher" / "tokens.npz") as f:
        t = f["tokens"]
    assert np.array_equal(t[0], t[3]) and not np.array_equal(t[0], t[1])
    assert run("x", "--method", "teacher") == 2
    assert "text-conditional" in capsys.readouterr().err
    assert _sample(tiny, tmp_path / "y", "--method", "teacher", "--captions", caps) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert run("z", "--method", "teacher", "--captions", str(tmp_path / "missing.npz")) == 2
    assert "caption file not found" in capsys.readouterr().err


def test_the_library_call_equals_the_command(tmp_path, tiny, student_file):
    """`sample(SampleConfig(...))` is what `ardistill sample` runs: same tokens and images."""
    sf = str(student_file("tiny-llamagen"))
    assert _sample(tiny, tmp_path / "cli", "--student", sf, "--t-list", "0", "--split", "3",
                   "--no-pngs") == 0
    r = sample(SampleConfig(Models("tiny_teachers:tiny_llamagen", student=sf),
                            DDMethod(t_list=(0,), split=3), num=5, batch_size=2))
    with np.load(tmp_path / "cli" / "tokens.npz") as f:
        assert np.array_equal(f["tokens"], r.tokens.numpy())
    with np.load(tmp_path / "cli" / "samples.npz") as f:
        assert np.array_equal(f["arr_0"], r.images.permute(0, 2, 3, 1).numpy())
    assert r.label == "DD 1-step" and r.settings["t_list"] == [0] and r.settings["split"] == 3
