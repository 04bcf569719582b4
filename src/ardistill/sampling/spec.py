"""What `ardistill sample` samples: the models to load, one method spec, and the run settings.

    cfg = SampleConfig(Models("mnist-llamagen"), DDMethod(steps=2), num=64, out="samples/")
    result = sample(cfg)                                     # ardistill.sampling.run

Steps are AR steps everywhere (LlamaGen tokens, VAR scales). A method spec holds only what
its method needs; `ardistill.sampling.run.prepare` turns it into a `Sampler`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ardistill.core.choosers import CHOICES
from ardistill.core.seeds import LABEL_MODES
from ardistill.sampling.methods import DD_CHOICES
from ardistill.text import EncoderSpec
from ardistill.utils import dtypes


def _check_choice(choice: str) -> None:
    if choice not in CHOICES:
        raise ValueError(f"teacher choice must be one of {', '.join(CHOICES)}, got {choice!r}")


# "auto": the choice the student file records (shipped students: the one measured best by the
# fidelity protocol), else "argmax" (official)
SPEC_DD_CHOICES = ("auto", *DD_CHOICES)


def _check_temperature(t: float | None) -> None:
    if t is not None and not t > 0:
        raise ValueError(f"DD temperature must be > 0, got {t}")


def _check_dd_choice(choice: str) -> None:
    if choice not in SPEC_DD_CHOICES:
        raise ValueError(f"DD choice must be one of {', '.join(SPEC_DD_CHOICES)}, got "
                         f"{choice!r}")


@dataclass(frozen=True)
class Models:
    """teacher: a preset, a model checkpoint or a `module:function` factory
    (`teachers.registry.load_teacher`); tokenizer_ckpt: its VQ file (official presets);
    student: a student file for the DD methods (None: the preset's shipped student);
    dtype: fp32 | bf16 | fp16 | auto (`utils.dtypes`: bf16 where it is fast, else fp32);
    int8: the linear layers of the student and of the teacher's transformer in int8 on the
    CPU (`teachers.int8`; lossy). They need float32 models: with int8, dtype auto means fp32
    (int8 is the alternative to bf16 there, not an addition)."""

    teacher: str
    tokenizer_ckpt: str | None = None
    student: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    compile: bool = False
    int8: bool = False

    def __post_init__(self) -> None:
        dtype = dtypes.canonical(self.dtype)
        object.__setattr__(self, "dtype", "fp32" if self.int8 and dtype == dtypes.AUTO else dtype)


@dataclass(frozen=True)
class TeacherMethod:
    """The teacher's own AR sampling; choice: multinomial | flow | greedy."""

    choice: str = "multinomial"
    name: ClassVar[str] = "teacher"
    needs_student: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_choice(self.choice)


@dataclass(frozen=True)
class DDMethod:
    """DD few-step sampling (method.md §6). steps: 1 -> t_list (0,), 2 -> (0, t2); t_list:
    explicit timesteps; split: AR steps whose positions take the logits head. None: the
    student file's recorded values, else the preset's released ones. choice: how the logits
    become tokens, "argmax" (official), "flow" (`sampling.methods.dd_token_choice`) or "auto"
    (default: the student file's recorded choice, else argmax). temperature: of the "flow"
    choice (None: the student file's recorded one, else 1)."""

    steps: int = 1
    t_list: tuple[int, ...] | None = None
    split: int | None = None
    choice: str = "auto"
    temperature: float | None = None
    name: ClassVar[str] = "dd"
    needs_student: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.t_list is None and self.steps not in (1, 2):
            raise ValueError(f"steps must be 1 or 2 (or give t_list), got {self.steps}")
        _check_dd_choice(self.choice)
        _check_temperature(self.temperature)

    @property
    def num_steps(self) -> int:
        return len(self.t_list) if self.t_list is not None else self.steps


@dataclass(frozen=True)
class DD2Method:
    """One step of a DD2 generator (method.md §10): a DD student file read at t = 0 with the
    logits head everywhere (default: the preset's shipped DD2 student). choice, temperature:
    as DDMethod."""

    choice: str = "auto"
    temperature: float | None = None
    name: ClassVar[str] = "dd2"
    needs_student: ClassVar[bool] = True
    num_steps: ClassVar[int] = 1
    student_method: ClassVar[str] = "dd2"

    def __post_init__(self) -> None:
        _check_dd_choice(self.choice)
        _check_temperature(self.temperature)


@dataclass(frozen=True)
class TeacherInvolvedMethod:
    """"pre-trained-n-m" (method.md §6): a DD step, the teacher regenerates steps n..m-1
    with `choice`, a DD step at m. official_prefix_quirk: VAR only, the official
    `intermediate_sample`'s prefix pass without the block-causal mask (compatibility)."""

    n: int
    m: int
    choice: str = "multinomial"
    split: int | None = None
    official_prefix_quirk: bool = False
    dd_choice: str = "auto"
    dd_temperature: float | None = None
    name: ClassVar[str] = "teacher-involved"
    needs_student: ClassVar[bool] = True
    num_steps: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _check_choice(self.choice)
        _check_dd_choice(self.dd_choice)
        _check_temperature(self.dd_temperature)
        if not 0 <= self.n < self.m:
            raise ValueError(f"teacher-involved needs 0 <= N < M, got N={self.n}, M={self.m}")


@dataclass(frozen=True)
class OneStepMethod:
    """onestep* (method.md §7): every position drawn independently from its marginal token
    frequency. marginals: a pairs dataset whose tokens estimate them (None:
    `marginal_samples` fresh multinomial teacher samples)."""

    choice: str = "multinomial"
    marginals: str | None = None
    marginal_samples: int = 512
    name: ClassVar[str] = "onestep"
    needs_student: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_choice(self.choice)
        if self.marginal_samples < 1:
            raise ValueError("marginal_samples must be >= 1")


@dataclass(frozen=True)
class SkipMethod:
    """skip-k (method.md §7): the teacher runs S - k steps; every skipped position is drawn
    from the teacher's distribution at its last computed step."""

    k: int = 1
    choice: str = "multinomial"
    name: ClassVar[str] = "skip"
    needs_student: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_choice(self.choice)
        if self.k < 1:
            raise ValueError(f"skip needs k >= 1, got {self.k}")


Method = (TeacherMethod | DDMethod | DD2Method | TeacherInvolvedMethod | OneStepMethod
          | SkipMethod)
METHODS = {m.name: m for m in (TeacherMethod, DDMethod, DD2Method, TeacherInvolvedMethod,
                                OneStepMethod, SkipMethod)}


@dataclass(frozen=True)
class SampleConfig:
    """num samples in batches of batch_size; sample i's noise, label and choice seed are a
    pure function of (seed, i) (`core.seeds`). classes: "balanced", "random" or a tuple of
    class ids (cycled, balanced); captions: the caption feature file of a text-conditional
    teacher (sample i uses row i mod R, as in `gen-pairs`), required for those teachers and
    refused for others. flow_steps: the flow solver's main-grid steps ("flow" choices).
    out: folder for the files (None: return the result only). prompts, encoder: instead of
    captions, a prompts file (one a line) and the text encoder that turns it into caption
    features in memory (`core.captions.captions_from_prompts`; the same rows as the file
    `ardistill encode-captions` writes)."""

    models: Models
    method: Method = field(default_factory=DDMethod)
    num: int = 16
    batch_size: int = 16
    seed: int = 0
    classes: str | tuple[int, ...] = "balanced"
    captions: str | None = None
    flow_steps: int | None = None
    out: str | None = None
    pngs: bool = True
    prompts: str | None = None
    encoder: EncoderSpec | None = None

    def __post_init__(self) -> None:
        if self.captions is not None and self.prompts is not None:
            raise ValueError("--captions and --prompts exclude each other: give caption "
                             "features or prompts to encode, not both")
        if self.prompts is None and self.encoder is not None:
            raise ValueError("--encoder applies with --prompts FILE only")
        # --prompts without --encoder: the teacher's own (embedded text-conditional presets),
        # else an error when the teacher is loaded (`sampling.run`)
        if self.num < 1 or self.batch_size < 1:
            raise ValueError("num and batch_size must be >= 1")
        if isinstance(self.classes, str) and self.classes not in LABEL_MODES:
            raise ValueError(f"classes must be {' or '.join(LABEL_MODES)} or a list of ids")
