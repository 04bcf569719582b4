"""`run_demo(cfg) -> DemoResult`: every stage for every teacher, then the report.

Stage times are measured with `time.perf_counter` around each stage and recorded as
`timings["<teacher>/<stage>"]` (plus "reference" and "total").
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ardistill.data.mnist import mnist_images
from ardistill.demo import stages
from ardistill.demo.config import DemoConfig
from ardistill.demo.report import finish_rows, make_row, write_report
from ardistill.demo.text import TEACHER as TEXT_TEACHER
from ardistill.demo.text import text_to_image
from ardistill.errors import UserError
from ardistill.evaluation.images import ImageReference, prepare_reference
from ardistill.metrics.networks import load_feature_extractor
from ardistill.teachers.base import Teacher
from ardistill.teachers.registry import load_teacher
from ardistill.utils.images import save_grid, to_uint8
from ardistill.utils.locks import output_folder
from ardistill.utils.threads import intra_op_threads


@dataclass
class DemoResult:
    """rows: the report rows; timings: seconds per stage; files: report and grid paths;
    students: per teacher {1: record, 2: record} (training summary, export path)."""

    out: Path
    rows: list[dict]
    timings: dict[str, float]
    cpu: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    students: dict[str, dict] = field(default_factory=dict)


class _Clock:
    """Wall seconds per stage, and this process's CPU seconds (what the stage would take
    alone on one core: this machine is shared, so wall time varies with the load)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, progress: bool):
        if progress:
            print(f"== {name}", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 2)
            self.cpu[name] = round(time.process_time() - c0, 2)


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the demo of `cfg` into `cfg.out` (the shipped teachers of `cfg.teachers`)."""
    with output_folder(cfg.out, what="demo folder") as out:
        return _run_demo(cfg, out)


def _run_demo(cfg: DemoConfig, out: Path) -> DemoResult:
    clock = _Clock()
    t_start, c_start = time.perf_counter(), time.process_time()
    rows, files, students = [], {}, {}
    with intra_op_threads(cfg.threads):
        with clock.stage("reference", cfg.progress):
            extractor, reference = _reference(cfg)
        for name in cfg.teachers:
            teacher = load_teacher(name)
            r, f, s = _one_teacher(teacher, name, cfg, out, clock, extractor, reference)
            rows += r
            files.update(f)
            students[name] = s
        text_rows, text_note = [], None
        if cfg.text_to_image:
            with clock.stage(f"{TEXT_TEACHER}/sample+evaluate+bench", cfg.progress):
                try:
                    text_rows, prompts, grid = text_to_image(cfg, out, extractor, reference)
                    files.update({"prompts:mnist-t2i": str(prompts),
                                  f"grid:{TEXT_TEACHER}:prompts": str(grid)})
                except UserError as e:  # the `text` extra is missing: say so, go on
                    text_note = str(e)
    finish_rows(rows)
    clock.timings["total"] = round(time.perf_counter() - t_start, 2)
    clock.cpu["total"] = round(time.process_time() - c_start, 2)
    grids = [(f"{k.split(':', 1)[1].replace(':', ': ')}", Path(v).read_bytes())
             for k, v in files.items() if k.startswith("grid:")]
    md, js = write_report(out, rows, cfg.to_json(), clock.timings, cpu=clock.cpu,
                          extra={"environment": _environment(cfg), "students": students,
                                 "text_to_image": text_rows, "text_to_image_note": text_note},
                          grids=grids)
    files.update(report_md=str(md), report_json=str(js), report_html=str(out / "report.html"),
                 quality_speed=str(out / "quality_speed.png"))
    return DemoResult(out, rows, clock.timings, clock.cpu, files, students)


def _reference(cfg: DemoConfig):
    """The shipped MNIST feature network and the held-out MNIST split's features."""
    extractor = load_feature_extractor("mnist")
    images, _ = mnist_images("heldout")
    ref = prepare_reference(ImageReference("mnist-heldout", images=to_uint8(images)),
                            extractor, batch_size=cfg.sample_batch)
    return extractor, ref


def _one_teacher(teacher: Teacher, name: str, cfg: DemoConfig, out: Path, clock: _Clock,
                 extractor, reference) -> tuple[list[dict], dict, dict]:
    work = stages.TeacherWork(out / name)
    p = cfg.progress
    with clock.stage(f"{name}/pairs", p):
        stages.make_pairs(teacher, cfg, work, name)
    with clock.stage(f"{name}/train", p):
        students = stages.train_students(teacher, cfg, work)
    with clock.stage(f"{name}/sample", p):
        methods = stages.methods_of(teacher, cfg, work, name, students)
        samples = stages.sample_methods(teacher, methods, work, cfg)
    with clock.stage(f"{name}/evaluate", p):
        metrics = stages.evaluate_methods(teacher, samples, work, cfg, reference, extractor)
    with clock.stage(f"{name}/bench", p):
        bench = stages.bench_methods(teacher, methods, cfg)
    rows, files = [], {}
    grid_dir = out / "grids"
    for m in methods:
        s = samples[m.key]
        rows.append(make_row(name, m.key, m.method, m.steps, metrics[m.key], bench[m.key],
                             s.parameters))
        grid = stages.class_rows(s.images, s.labels, cfg.grid_per_class, teacher.num_classes)
        safe = m.key.replace("*", "star")  # no shell wildcards in file names
        path = save_grid(grid, grid_dir / f"{name}_{safe}.png", nrow=cfg.grid_per_class)
        files[f"grid:{name}:{m.key}"] = str(path)
    return rows, files, {str(k): rec for k, (_, rec) in students.items()}


def _environment(cfg: DemoConfig) -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "threads": cfg.threads,
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}}
