"""What `ardistill app` computes, without any UI: one request -> one panel per method, every
method fed the same noise, labels and seeds, through `ardistill sample`'s own code path
(`sampling.run`: load, prepare, sample_with), so a panel's images equal those of

    ardistill sample --teacher T --method M ... --num COUNT --batch-size COUNT --seed S
                     --classes C

`Comparer` keeps the loaded teachers and students between requests (a page is used many times).

    comparer = Comparer(device="cpu", dtype="fp32")
    panels = comparer.compare(Request("mnist-llamagen", ("teacher", "DD 1-step"), classes="3"))
    panels[1].images[0]            # (H, W, 3) uint8, the DD 1-step image of sample 0
    panels[1].speedup              # teacher seconds per image / DD 1-step's (same request)
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ardistill.errors import USER_ERRORS, message
from ardistill.sampling.run import (
    load_sampling_student,
    load_sampling_teacher,
    prepare,
    sample_with,
    student_path,
)
from ardistill.sampling.spec import (
    DD2Method,
    DDMethod,
    Models,
    OneStepMethod,
    SampleConfig,
    SkipMethod,
    TeacherInvolvedMethod,
    TeacherMethod,
)
from ardistill.teachers.base import Teacher
from ardistill.teachers.registry import all_presets
from ardistill.utils.files import atomic_write_bytes

# The methods the page offers, in its order (names as shown).
APP_METHODS = ("teacher", "DD 1-step", "DD 2-step", "teacher-involved", "onestep*", "skip-k",
               "DD2 1-step")
MAX_COUNT = 64


@dataclass(frozen=True)
class Request:
    """teacher: a preset, checkpoint or factory (as `ardistill sample --teacher`); methods:
    names of APP_METHODS; classes: "balanced", "random" or ids like "3" / "1,7" (class-
    conditional teachers); captions: a caption feature file, or prompts: typed prompts, one a
    line (text-conditional teachers; encoded with the teacher's own encoder, `mnist-t2i`);
    count: images per method; skip_k: k of skip-k; involved: (N, M) of teacher-involved
    (None: (0, the preset's t2)); students: student files by method name (missing: the
    preset's shipped student)."""

    teacher: str
    methods: tuple[str, ...]
    classes: str = "balanced"
    seed: int = 0
    count: int = 4
    captions: str | None = None
    prompts: str | None = None
    skip_k: int = 1
    involved: tuple[int, int] | None = None
    students: dict[str, str] = field(default_factory=dict)
    tokenizer_ckpt: str | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in APP_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; the app offers "
                             f"{', '.join(APP_METHODS)}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be in [1, {MAX_COUNT}], got {self.count}")
        if self.captions and self.prompts and self.prompts.strip():
            raise ValueError("give a caption file or prompts, not both")


@dataclass
class Panel:
    """One method's result: images (H, W, 3) uint8 and their labels (class ids or caption
    rows); seconds_per_image: generation + VQ decoding, this request, one batch; speedup:
    the teacher's seconds per image / this one's (None without a teacher panel); error: the
    readable reason this method produced nothing (the other panels are unaffected)."""

    method: str
    label: str = ""
    images: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    steps: int = 0
    seconds_per_image: float | None = None
    speedup: float | None = None
    error: str | None = None


def parse_classes(text: str) -> str | tuple[int, ...]:
    text = (text or "").strip()
    if text in ("", "balanced", "random"):
        return text or "balanced"
    try:
        ids = tuple(int(x) for x in text.replace(" ", ",").split(",") if x.strip())
    except ValueError as e:
        raise ValueError(f"classes {text!r}: give class ids like 3 or 1,7, or 'balanced'") from e
    if not ids:
        raise ValueError("classes: give at least one class id")
    return ids


def method_spec(name: str, req: Request, teacher: Teacher):
    """The `sampling.spec` method of an app method name."""
    if name == "teacher":
        return TeacherMethod()
    if name in ("DD 1-step", "DD 2-step"):
        return DDMethod(steps=1 if name == "DD 1-step" else 2)
    if name == "DD2 1-step":
        return DD2Method()
    if name == "onestep*":
        return OneStepMethod()
    if name == "skip-k":
        if not 1 <= req.skip_k < teacher.layout.num_steps:
            raise ValueError(f"skip-k: k must be in [1, {teacher.layout.num_steps - 1}] for "
                             f"{teacher.name}, got {req.skip_k}")
        return SkipMethod(req.skip_k)
    n, m = req.involved or (0, _preset_t2(teacher))
    if not 0 <= n < m <= teacher.layout.num_steps:
        raise ValueError(f"teacher-involved N,M must satisfy 0 <= N < M <= "
                         f"{teacher.layout.num_steps}, got {n},{m}")
    return TeacherInvolvedMethod(n, m)


def _preset_t2(teacher: Teacher) -> int:
    preset = all_presets().get(teacher.name)
    if preset is None or preset.dd is None:
        raise ValueError(f"teacher-involved on {teacher.name}: give N,M (no preset t2)")
    return preset.dd.t2


def sample_config(req: Request, name: str, teacher: Teacher, device: str = "cpu",
                  dtype: str = "auto", int8: bool = False) -> SampleConfig:
    """The SampleConfig `ardistill sample` builds for the same flags (one batch of count)."""
    method = method_spec(name, req, teacher)
    student = req.students.get(name) or None
    models = Models(req.teacher, req.tokenizer_ckpt, student, device, dtype, int8=int8)
    classes = parse_classes(req.classes) if teacher.num_classes else "balanced"
    return SampleConfig(models, method, num=req.count, batch_size=req.count, seed=req.seed,
                        classes=classes, captions=req.captions or None,
                        prompts=prompts_file(req.prompts))


def prompts_file(text: str | None) -> str | None:
    """Typed prompts (one a line) as the prompts file `ardistill sample --prompts` reads: a
    file named by the text's sha256 in the temp folder (written once)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    body = "\n".join(lines) + "\n"
    path = Path(tempfile.gettempdir()) / "ardistill-app" / (
        hashlib.sha256(body.encode("utf-8")).hexdigest()[:32] + ".txt")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, body.encode("utf-8"))
    return str(path)


class Comparer:
    """Loads each teacher and student once, then answers requests."""

    def __init__(self, device: str = "cpu", dtype: str = "auto", int8: bool = False) -> None:
        self.device, self.dtype, self.int8 = device, dtype, int8
        self._teachers: dict[tuple, Teacher] = {}
        self._students: dict[tuple, tuple] = {}
        self._onestep: dict[tuple, object] = {}  # onestep* samplers: marginals cost teacher runs

    def teacher(self, spec: str, tokenizer_ckpt: str | None = None) -> Teacher:
        key = (spec, tokenizer_ckpt)
        if key not in self._teachers:
            self._teachers[key] = load_sampling_teacher(
                Models(spec, tokenizer_ckpt, None, self.device, self.dtype, int8=self.int8))
        return self._teachers[key]

    def _student(self, cfg: SampleConfig, teacher: Teacher):
        path = student_path(cfg)
        key = (cfg.models.teacher, cfg.models.tokenizer_ckpt, str(path),
               path.stat().st_mtime_ns if path.is_file() else None)
        if key not in self._students:
            self._students[key] = load_sampling_student(cfg, teacher)
        return self._students[key]

    def run_one(self, req: Request, name: str,
                on_step: Callable[[int, int], None] | None = None) -> Panel:
        """One method's panel; a user error (missing file, a student of another teacher, bad
        settings) becomes the panel's error text."""
        try:
            teacher = self.teacher(req.teacher, req.tokenizer_ckpt)
            cfg = sample_config(req, name, teacher, self.device, self.dtype, self.int8)
            student, hints = (self._student(cfg, teacher) if cfg.method.needs_student
                              else (None, {}))
            if isinstance(cfg.method, OneStepMethod):
                key = (cfg.models, cfg.method, cfg.seed, cfg.captions, cfg.prompts)
                if key not in self._onestep:  # the marginals depend on these only
                    self._onestep[key] = prepare(cfg, teacher, None, on_step=on_step)
                sampler = self._onestep[key]
            else:
                sampler = prepare(cfg, teacher, student, hints, on_step=on_step)
            result = sample_with(teacher, sampler, cfg)
        except USER_ERRORS as e:
            return Panel(name, error=message(e))
        images = [img.permute(1, 2, 0).numpy() for img in result.images]
        return Panel(name, result.label, images, [int(x) for x in result.labels], result.steps,
                     result.seconds_per_image)

    def compare(self, req: Request,
                on_step: Callable[[str, int, int], None] | None = None) -> list[Panel]:
        """Every method of `req`, in APP_METHODS order; speedups against the teacher panel.
        on_step(method, done, total): the teacher's AR steps, for progress bars."""
        panels = []
        for name in [m for m in APP_METHODS if m in req.methods]:
            hook = None if on_step is None else (lambda d, t, n=name: on_step(n, d, t))
            panels.append(self.run_one(req, name, hook))
        ref = next((p for p in panels if p.method == "teacher" and p.error is None), None)
        for p in panels:
            if ref is not None and p.seconds_per_image:
                p.speedup = ref.seconds_per_image / p.seconds_per_image
        return panels


def timing_table(panels: list[Panel]) -> str:
    """A markdown table of the panels: steps, seconds per image, speedup over the teacher."""
    lines = ["| method | network passes | s / image | speedup |", "|---|---|---|---|"]
    for p in panels:
        if p.error:
            lines.append(f"| {p.method} | - | error | - |")
            continue
        sp = "-" if p.speedup is None else f"{p.speedup:.1f}x"
        lines.append(f"| {p.label} | {p.steps} | {p.seconds_per_image:.4f} | {sp} |")
    return "\n".join(lines) + "\n"
