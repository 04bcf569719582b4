"""Bad input across every subcommand, table-driven: each case exits with the expected code
(2 for `ardistill: error:`), prints a message naming the problem, never a traceback, and leaves
the data that was there untouched. Tiny real teachers and students (tests/tiny_teachers.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from ardistill.cli import main
from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.run import generate_pairs
from ardistill.student.files import export_student
from ardistill.student.registry import build_student
from ardistill.utils.locks import output_folder
from tiny_teachers import SPECS, load_tiny

VAR, LLAMA = SPECS["tiny-var"], SPECS["tiny-llamagen"]


@dataclass
class Env:
    """Files the cases use: a pairs dataset, a finished run, students, sample runs."""

    root: Path
    pairs: Path = field(init=False)
    run: Path = field(init=False)
    student: Path = field(init=False)
    other_student: Path = field(init=False)
    samples: Path = field(init=False)
    afile: Path = field(init=False)

    def __post_init__(self) -> None:
        r = self.root
        self.pairs, self.run, self.samples = r / "pairs", r / "run", r / "samples"
        self.student, self.other_student = r / "var1.safetensors", r / "llama1.safetensors"
        self.afile = r / "a-file.txt"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    e = Env(tmp_path_factory.mktemp("bad"))
    e.afile.write_text("not a folder")
    generate_pairs(load_tiny("tiny-var"), PairsSettings(num=24, seed=0, shard_size=8,
                                                        micro_batch=4), e.pairs, spec=VAR,
                   options=GenOptions(batch_size=8, progress=False))
    assert main(["train", "--pairs", str(e.pairs), "--out", str(e.run), "--recipe", "debug",
                 "--timesteps", "0", "--split", "2", "--holdout", "8", "--eval-samples", "8",
                 "--steps", "4", "--batch-size", "4", "--threads", "1", "--no-progress"]) == 0
    for spec, path in (("tiny-var", e.student), ("tiny-llamagen", e.other_student)):
        t = load_tiny(spec)
        export_student(build_student(t, generator=torch.Generator().manual_seed(0)), path, t,
                       t_list=(0,), split=2, spec=SPECS[spec])
    assert main(["sample", "--teacher", VAR, "--student", str(e.student), "--num", "4",
                 "--batch-size", "4", "--out", str(e.samples)]) == 0
    return e


def _digest(path: Path) -> str:
    """Content of a file or folder tree (names and bytes)."""
    h = hashlib.sha256()
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in paths:
        h.update(str(p.relative_to(path.parent)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _bad_student(e: Env, kind: str) -> Path:
    path = e.root / f"{kind}.safetensors"
    path.write_bytes(b"" if kind == "empty" else os.urandom(3000))
    return path


def _truncated_npz(e: Env) -> Path:
    path = e.root / "cut" / "samples.npz"
    path.parent.mkdir(exist_ok=True)
    data = (e.samples / "samples.npz").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _report_run(e: Env, text: str, name: str) -> Path:
    run = e.root / name
    run.mkdir(exist_ok=True)
    (run / "sample.json").write_text(text)
    return run


def _foreign_images(e: Env) -> Path:
    out = e.root / "foreign"
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "images" / "mine.png").write_bytes(b"user data")
    return out


# name -> (argv builder, expected exit code, expected message part, paths that must not change)
CASES = {
    "gen-pairs out below a file": (lambda e: ["gen-pairs", "--teacher", VAR, "--num", "8",
                                              "--out", str(e.afile / "ds")], 2, "is a file", []),
    "gen-pairs out is a file": (lambda e: ["gen-pairs", "--teacher", VAR, "--num", "8",
                                           "--out", str(e.afile)], 2,
                                "exists and is not a folder", ["afile"]),
    "gen-pairs unknown teacher": (lambda e: ["gen-pairs", "--teacher", "llamagen-q", "--num", "8",
                                             "--out", str(e.root / "x")], 2,
                                  "neither a teacher preset", []),
    "gen-pairs missing factory": (lambda e: ["gen-pairs", "--teacher", "no_such_mod:make",
                                             "--num", "8", "--out", str(e.root / "x")], 2,
                                  "cannot import no_such_mod", []),
    "gen-pairs other settings": (lambda e: ["gen-pairs", "--teacher", VAR, "--num", "24",
                                            "--micro-batch", "4", "--shard-size", "8",
                                            "--top-k", "3", "--out", str(e.pairs)], 2,
                                 "other settings", ["pairs"]),
    "gen-pairs shard size": (lambda e: ["gen-pairs", "--teacher", VAR, "--num", "8",
                                        "--micro-batch", "3", "--shard-size", "4", "--out",
                                        str(e.root / "x")], 2, "multiple of micro_batch", []),
    "verify-pairs not a dataset": (lambda e: ["verify-pairs", str(e.root / "nothing")], 1,
                                   "no such folder", []),
    "train pairs missing": (lambda e: ["train", "--pairs", str(e.root / "nope"), "--out",
                                       str(e.root / "r1")], 2, "no such folder", []),
    "train out below a file": (lambda e: ["train", "--pairs", str(e.pairs), "--out",
                                          str(e.afile / "run")], 2, "is a file", ["pairs"]),
    "train holdout too big": (lambda e: ["train", "--pairs", str(e.pairs), "--out",
                                         str(e.root / "r2"), "--holdout", "24", "--split", "2",
                                         "--timesteps", "0"], 2,
                              "leaves none to train on", ["pairs"]),
    "train perceptual weight 0": (lambda e: ["train", "--pairs", str(e.pairs), "--out",
                                             str(e.root / "r3"), "--perceptual", "lpips",
                                             "--lpips-vgg", "v.pth", "--lpips-linear", "l.pth"],
                                  2, "has no effect with perceptual_weight 0", []),
    "train weight without loss": (lambda e: ["train", "--pairs", str(e.pairs), "--out",
                                             str(e.root / "r4"), "--perceptual-weight", "1"],
                                  2, "needs a perceptual loss", []),
    "train fewer steps than done": (lambda e: ["train", "--pairs", str(e.pairs), "--out",
                                               str(e.run), "--recipe", "debug", "--timesteps",
                                               "0", "--split", "2", "--holdout", "8",
                                               "--steps", "2", "--batch-size", "4"], 2,
                                    "more than --steps 2", ["run"]),
    "train bad timesteps": (lambda e: ["train", "--pairs", str(e.pairs), "--out",
                                       str(e.root / "r5"), "--timesteps", "0,x"], 2,
                            "expected integers", []),
    "sample out below a file": (lambda e: ["sample", "--teacher", VAR, "--student",
                                           str(e.student), "--out", str(e.afile / "s")], 2,
                                "is a file", []),
    "sample empty student": (lambda e: ["sample", "--teacher", VAR, "--student",
                                        str(_bad_student(e, "empty")), "--out",
                                        str(e.root / "s1")], 2, "empty.safetensors", []),
    "sample random-bytes student": (lambda e: ["sample", "--teacher", VAR, "--student",
                                               str(_bad_student(e, "random")), "--out",
                                               str(e.root / "s2")], 2, "random.safetensors",
                                    []),
    "sample student of another teacher": (lambda e: ["sample", "--teacher", VAR, "--student",
                                                     str(e.other_student), "--out",
                                                     str(e.root / "s3")], 2,
                                          "trained for teacher", []),
    "sample 1-step student at 2 steps": (lambda e: ["sample", "--teacher", VAR, "--student",
                                                    str(e.student), "--steps", "2", "--out",
                                                    str(e.root / "s4")], 2, "never saw", []),
    "sample into foreign images": (lambda e: ["sample", "--teacher", VAR, "--student",
                                              str(e.student), "--out", str(_foreign_images(e))],
                                   2, "no `ardistill sample` run wrote", ["foreign"]),
    "sample classes outside": (lambda e: ["sample", "--teacher", VAR, "--method", "teacher",
                                          "--classes", "3,70", "--out", str(e.root / "s5")],
                               2, "outside", []),
    "sample teacher-involved one number": (lambda e: ["sample", "--teacher", VAR,
                                                      "--teacher-involved", "1", "--out",
                                                      str(e.root / "s6")], 2, "takes N,M", []),
    "eval truncated npz": (lambda e: ["eval", str(_truncated_npz(e)), "--ref", "mnist"], 2,
                           "not a readable .npz", []),
    "eval out below a file": (lambda e: ["eval", str(e.samples / "samples.npz"), "--ref",
                                         "mnist", "--out", str(e.afile / "r.json")], 2,
                              "is a file", ["samples"]),
    "eval missing samples": (lambda e: ["eval", str(e.root / "none.npz"), "--ref", "mnist"], 2,
                             "none.npz", []),
    "eval nothing to do": (lambda e: ["eval", str(e.samples / "samples.npz")], 2,
                           "nothing to evaluate", []),
    "report malformed sample.json": (lambda e: ["report", str(_report_run(e, "{oops",
                                                                          "bad-json")),
                                                "--out", str(e.root / "rep")], 2,
                                     "bad-json/sample.json: not valid JSON", []),
    "report sample.json of something else": (lambda e: ["report", str(_report_run(
        e, json.dumps({"hello": 1}), "other-json")), "--out", str(e.root / "rep")], 2,
        "not a sample.json", []),
    "report no run": (lambda e: ["report", str(e.root / "none"), "--out", str(e.root / "rep")],
                      2, "no sample.json", []),
    "report out below a file": (lambda e: ["report", str(e.samples), "--out",
                                           str(e.afile / "rep")], 2, "is a file", ["samples"]),
    "demo unknown teacher": (lambda e: ["demo", "--teachers", "llamagen-b", "--out",
                                        str(e.root / "d")], 2, "not a shipped teacher", []),
    "demo out below a file": (lambda e: ["demo", "--quick", "--out", str(e.afile / "d")], 2,
                              "is a file", []),
    "bench unknown preset": (lambda e: ["bench", "sample", "--presets", "nope"], 2,
                             "unknown presets", []),
    "bench vq unknown preset": (lambda e: ["bench", "vq", "--presets", "nope"], 2,
                                "unknown teacher preset 'nope'", []),
    "bench vq official folder without the decoder": (
        lambda e: ["bench", "vq", "--presets", "mnist-var", "--repeats", "1", "--official-var",
                   str(e.root / "no-var")], 2, "models/basic_vae.py: not found", []),
    "teacher eval of a non-embedded preset": (lambda e: ["teacher", "eval", "llamagen-b"], 2,
                                              "not an embedded teacher", []),
    "zoo train-features zero epochs": (lambda e: ["zoo", "train-features", "--out",
                                                  str(e.root / "z"), "--epochs", "0"], 2,
                                       "must be >= 1", []),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, env, capsys):
    build, code, text, keep = CASES[name]
    argv = build(env)
    paths = {k: getattr(env, k, env.root / k) for k in keep}
    before = {k: _digest(p) for k, p in paths.items()}
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code, f"{name}: exit {rc}, stderr: {err[-800:]}"
    assert text in err, f"{name}: {text!r} not in {err[-800:]!r}"
    assert "Traceback" not in err
    if code == 2:
        assert "ardistill: error:" in err
    for k, d in before.items():
        assert _digest(paths[k]) == d, f"{name} changed {k}"
    for p in env.root.rglob("*"):
        assert ".tmp-" not in p.name, f"{name} left {p}"


def test_second_writer_is_refused_and_named(env, capsys):
    """While one process holds a folder, every writing command refuses it, naming the
    holder; the folder's content is untouched."""
    before = _digest(env.run)
    with output_folder(env.run, command="ardistill train (the first writer)"):
        cases = [["train", "--pairs", str(env.pairs), "--out", str(env.run), "--recipe", "debug",
                  "--timesteps", "0", "--split", "2", "--holdout", "8", "--steps", "6"],
                 ["sample", "--teacher", VAR, "--student", str(env.student), "--out",
                  str(env.run)],
                 ["gen-pairs", "--teacher", VAR, "--num", "8", "--out", str(env.run)]]
        for argv in cases:
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"is in use by pid {os.getpid()}" in err and "the first writer" in err, err
    assert _digest(env.run) == before
    assert not (env.run / ".ardistill.lock").exists()  # removed on release


def test_a_dead_holders_lock_is_taken_over(env, tmp_path, capsys):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / ".ardistill.lock").write_text(json.dumps(
        {"pid": 2**22 + 12345, "host": os.uname().nodename, "command": "ardistill sample x",
         "started": "2026-01-01T00:00:00"}))
    with output_folder(folder):
        pass
    assert "no longer running" in capsys.readouterr().err


def test_a_failed_command_leaves_no_empty_folder_it_created(env, tmp_path, capsys):
    """A run that fails on bad input before writing anything removes the folder it made; a
    folder that existed before, or that holds something, is kept."""
    new = tmp_path / "new-run"
    assert main(["train", "--method", "dd2", "--teacher", VAR, "--out", str(new),
                 "--pairs", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err and not new.exists()
    old = tmp_path / "old-run"
    old.mkdir()
    assert main(["train", "--method", "dd2", "--teacher", VAR, "--out", str(old),
                 "--pairs", str(tmp_path / "missing")]) == 2
    assert old.is_dir() and not any(old.iterdir())
    kept = tmp_path / "kept"
    with pytest.raises(RuntimeError):
        with output_folder(kept):
            (kept / "partial.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert (kept / "partial.txt").read_text() == "x"


def test_sample_replaces_an_earlier_run(env, tmp_path):
    """A second run into the same folder leaves only its own images (no stale PNGs for `eval`
    of images/ to mix in) and drops the earlier run's evaluation."""
    out = tmp_path / "s"
    base = ["sample", "--teacher", VAR, "--student", str(env.student), "--out", str(out)]
    assert main([*base, "--num", "6", "--batch-size", "6"]) == 0
    (out / "samples.eval.json").write_text("{}")
    assert main([*base, "--num", "3", "--batch-size", "3"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(3)]
    assert not (out / "samples.eval.json").exists()
    with np.load(out / "samples.npz") as f:
        assert f["arr_0"].shape[0] == 3


def test_corrupt_checkpoint_falls_back_to_the_previous_one(env, tmp_path, capsys):
    """Bytes flipped in the newest checkpoint (size kept): the resume names it and continues
    from the previous intact one."""
    run = tmp_path / "run"
    argv = ["train", "--pairs", str(env.pairs), "--out", str(run), "--recipe", "debug",
            "--timesteps", "0", "--split", "2", "--holdout", "8", "--eval-samples", "8",
            "--batch-size", "4", "--threads", "1", "--no-progress", "--ckpt-every", "2",
            "--keep-last", "3"]
    assert main([*argv, "--steps", "4"]) == 0
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_00000002.pt", "step_00000004.pt"]
    data = bytearray(ckpts[-1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpts[-1].write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*argv, "--steps", "6"]) == 0
    err = capsys.readouterr().err
    assert "step_00000004.pt: corrupt" in err and "step_00000002.pt" in err
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r][-4:] == [3, 4, 5, 6]  # from step 2 again


@pytest.mark.slow
def test_a_full_disk_leaves_nothing_partial(env, tmp_path):
    """A real write failure (the file-size limit of the process, as a full disk would): a clean
    error, no temporary file, no empty samples.npz, and no checkpoint left half-written."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000)); "
            "from ardistill.cli import main; sys.exit(main(sys.argv[1:]))")
    runs = {"sample": ["sample", "--teacher", VAR, "--student", str(env.student), "--num", "64",
                       "--batch-size", "64", "--out", str(tmp_path / "s")],
            "train": ["train", "--pairs", str(env.pairs), "--out", str(tmp_path / "t"),
                      "--recipe", "debug", "--timesteps", "0", "--split", "2", "--holdout",
                      "8", "--steps", "2", "--batch-size", "4", "--no-progress"]}
    envvars = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for name, argv in runs.items():
        res = subprocess.run([sys.executable, "-c", code, *argv], env=envvars,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, (name, res.stderr[-1500:])
        assert "ardistill: error:" in res.stderr and "File too large" in res.stderr
        assert "Traceback" not in res.stderr
        left = [p for p in tmp_path.rglob("*") if ".tmp" in p.name
                or (p.is_file() and p.stat().st_size == 0 and p.name != ".ardistill.lock")]
        assert not left, (name, left)
