"""Where the shipped students live (`ardistill.weights`) and how `ardistill sample` finds them."""

from __future__ import annotations

import pytest

from ardistill.errors import CheckpointError
from ardistill.sampling.run import default_student_path
from ardistill.weights import shipped_dir, student_file, student_file_name, student_record_name


def test_file_names():
    assert student_file_name("mnist-llamagen", 1) == "mnist_llamagen_dd1-1step.safetensors"
    assert student_file_name("mnist-var", 2) == "mnist_var_dd1-2step.safetensors"
    assert student_file_name("mnist-var", 1, "dd2") == "mnist_var_dd2-1step.safetensors"
    assert student_record_name("mnist-var") == "mnist_var_students.json"
    assert shipped_dir().name == "weights"
    with pytest.raises(ValueError, match="steps"):
        student_file_name("mnist-var", 3)
    with pytest.raises(ValueError, match="dd2"):
        student_file_name("mnist-var", 2, "dd2")


def test_missing_student_is_a_clear_error():
    with pytest.raises(CheckpointError,
                       match="no shipped 1-step DD1 student of mnist-nothing.*--student PATH"):
        student_file("mnist-nothing", 1)


def test_sample_resolution_goes_through_the_weights_registry():
    with pytest.raises(CheckpointError, match="--student PATH"):
        default_student_path("llamagen-b", 1)  # not an embedded preset
    for steps in (1, 2):
        name = student_file_name("mnist-llamagen", steps)
        if (shipped_dir() / name).is_file():
            assert default_student_path("mnist-llamagen", steps).name == name
        else:
            with pytest.raises(CheckpointError, match=name):
                default_student_path("mnist-llamagen", steps)


def test_ship_student_writes_fp16_and_a_record(tmp_path, capsys):
    """`ardistill zoo ship-student` copies a run's export as fp16 with its record; `sample`
    reads the copy; a run of another teacher is refused."""
    import json

    import torch
    from safetensors import safe_open

    from ardistill.cli import main
    from ardistill.student.files import export_student
    from ardistill.student.registry import build_student
    from ardistill.teachers.registry import load_teacher

    teacher = load_teacher("mnist-llamagen")
    run = tmp_path / "run"
    run.mkdir()
    export_student(build_student(teacher, generator=torch.Generator().manual_seed(0)),
                   run / "student.safetensors", teacher, t_list=(0,), split=64)
    out = tmp_path / "weights"
    out.mkdir()
    assert main(["zoo", "ship-student", "--teacher", "mnist-llamagen", "--run", str(run),
                 "--out", str(out), "--note", "a test"]) == 0
    shipped = out / "mnist_llamagen_dd1-1step.safetensors"
    with safe_open(str(shipped), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    rec = json.loads((out / "mnist_llamagen_students.json").read_text())
    entry = rec["files"]["dd1-1step"]
    assert entry["name"] == shipped.name and entry["note"] == "a test" and entry["split"] == 64
    assert main(["sample", "--teacher", "mnist-llamagen", "--student", str(shipped), "--num",
                 "2", "--batch-size", "2", "--no-pngs", "--out", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["settings"][
        "dd_choice"] == "argmax"  # auto, and the file records no choice: the official argmax
    assert main(["zoo", "ship-student", "--teacher", "mnist-var", "--run", str(run), "--out",
                 str(out)]) == 2
    assert "trained for mnist-llamagen" in capsys.readouterr().err


def test_recorded_dd_choice_is_what_auto_samples(tmp_path):
    """ship-student --dd-choice flow: the file records it; `sample` (--dd-choice auto, the
    default) then equals an explicit --dd-choice flow, and --dd-choice argmax still overrides."""
    import json

    import numpy as np
    import torch
    from safetensors import safe_open

    from ardistill.cli import main
    from ardistill.student.files import export_student
    from ardistill.student.registry import build_student
    from ardistill.teachers.registry import load_teacher

    teacher = load_teacher("mnist-var")
    run = tmp_path / "run"
    run.mkdir()
    export_student(build_student(teacher, generator=torch.Generator().manual_seed(1)),
                   run / "student.safetensors", teacher, t_list=(0,), split=6)
    out = tmp_path / "weights"
    out.mkdir()
    assert main(["zoo", "ship-student", "--teacher", "mnist-var", "--run", str(run), "--out",
                 str(out), "--dd-choice", "flow", "--dd-temperature", "0.5"]) == 0
    shipped = out / "mnist_var_dd1-1step.safetensors"
    with safe_open(str(shipped), "pt") as f:
        assert f.metadata()["dd_choice"] == "flow" and f.metadata()["dd_temperature"] == "0.5"
    rec = json.loads((out / "mnist_var_students.json").read_text())
    assert rec["files"]["dd1-1step"]["dd_choice"] == "flow"
    assert rec["files"]["dd1-1step"]["dd_temperature"] == 0.5
    runs = {}
    for name, flags in (("auto", ["--dd-choice", "auto"]),
                        ("flow", ["--dd-choice", "flow", "--dd-temperature", "0.5"]),
                        ("flow1", ["--dd-choice", "flow", "--dd-temperature", "1"]),
                        ("argmax", ["--dd-choice", "argmax"])):
        o = tmp_path / name
        assert main(["sample", "--teacher", "mnist-var", "--student", str(shipped), "--num", "6",
                     "--batch-size", "6", "--no-pngs", *flags, "--out", str(o)]) == 0
        runs[name] = (json.loads((o / "sample.json").read_text()),
                      np.load(o / "tokens.npz")["tokens"])
    assert runs["auto"][0]["label"] == "DD 1-step (flow, T 0.5)"
    assert runs["auto"][0]["settings"]["dd_choice"] == "flow"
    assert runs["auto"][0]["settings"]["dd_temperature"] == 0.5
    assert np.array_equal(runs["auto"][1], runs["flow"][1])
    assert runs["flow1"][0]["label"] == "DD 1-step (flow)"
    assert not np.array_equal(runs["flow1"][1], runs["flow"][1])
    assert runs["argmax"][0]["label"] == "DD 1-step"
    assert not np.array_equal(runs["argmax"][1], runs["flow"][1])
    assert main(["zoo", "ship-student", "--teacher", "mnist-var", "--run", str(run), "--out",
                 str(out), "--dd-temperature", "0.5"]) == 2  # a temperature without flow


def test_demo_export_keeps_a_shipped_student(tmp_path, capsys):
    """`ardistill demo --export-students` never replaces a student shipped by ship-student."""
    import json

    import torch

    from ardistill.demo.config import DemoConfig
    from ardistill.demo.export import export_students
    from ardistill.demo.run import DemoResult
    from ardistill.student.files import export_student
    from ardistill.student.registry import build_student
    from ardistill.teachers.registry import load_teacher

    teacher = load_teacher("mnist-llamagen")
    src = tmp_path / "student.safetensors"
    export_student(build_student(teacher, generator=torch.Generator().manual_seed(0)), src,
                   teacher, t_list=(0,), split=64)
    out = tmp_path / "weights"
    out.mkdir()
    (out / "mnist_llamagen_dd1-1step.safetensors").write_bytes(b"the shipped one")
    (out / "mnist_llamagen_students.json").write_text(json.dumps(
        {"files": {"dd1-1step": {"name": "mnist_llamagen_dd1-1step.safetensors"}}}))
    rec = {"export": str(src), "sample_split": 64, "t_list": [0], "split": 20, "steps": 1,
           "seconds": 1.0, "final_loss": 1.0, "eval": {}}
    result = DemoResult(tmp_path, [], {}, {}, {}, {"mnist-llamagen": {1: rec, 2: rec}})
    written = export_students(result, DemoConfig.quick(), "ardistill demo", out)
    assert (out / "mnist_llamagen_dd1-1step.safetensors").read_bytes() == b"the shipped one"
    assert (out / "mnist_llamagen_dd1-2step.safetensors") in written
    files = json.loads((out / "mnist_llamagen_students.json").read_text())["files"]
    assert set(files) == {"dd1-1step", "2"} and "kept the shipped" in capsys.readouterr().out


@pytest.mark.parametrize("preset", ["mnist-llamagen", "mnist-var"])
def test_shipped_students_match_their_records(preset):
    """Every shipped student file has a record with its sha256, timesteps, recorded token
    choice and a 2,000-sample fidelity row beside the teacher's; no file without a record."""
    import json

    from safetensors import safe_open

    from ardistill.utils.files import sha256_file

    rec = json.loads((shipped_dir() / student_record_name(preset)).read_text())
    names = set()
    for key, e in rec["files"].items():
        path = shipped_dir() / e["name"]
        names.add(e["name"])
        assert path.is_file(), key
        assert sha256_file(path) == e["sha256"], f"{key}: file and record differ"
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        assert json.loads(meta["t_list"]) == e["t_list"]
        assert meta.get("dd_choice", "argmax") == e.get("dd_choice", "argmax")
        if "dd_temperature" in meta:
            assert float(meta["dd_temperature"]) == e["dd_temperature"]
        fid = e["fidelity"]
        assert set(fid) >= {"teacher"} and len(fid) == 2, key
        assert all(row["num_samples"] >= 2000 for row in fid.values()), key
    stem = preset.replace("-", "_")
    assert {p.name for p in shipped_dir().glob(f"{stem}_dd*.safetensors")} == names
