"""`sample(cfg)`: every sampler of ardistill behind one config (the function behind
`ardistill sample`).

`sample_with(teacher, student, cfg)` runs on models already loaded (tests, the demo, bench);
`sample(cfg)` loads them from the config (`ardistill.sampling.models`), samples and writes
the files (`write_outputs`): PNGs, a grid, the ADM-layout `.npz`, and `tokens.npz`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ardistill.pairs.captions import Captions
from ardistill.pairs.seeds import caption_rows
from ardistill.sampling.baselines import sample_onestep, sample_skip
from ardistill.sampling.methods import (
    CHOICES,
    make_chooser,
    sample_dd,
    sample_teacher,
    sample_teacher_involved,
)
from ardistill.sampling.seeds import LABEL_MODES, choice_seeds, sample_labels, sample_noise
from ardistill.student.base import Student
from ardistill.teachers.base import Condition, Teacher
from ardistill.utils.images import save_grid, save_npz, save_pngs, to_uint8

METHODS = ("teacher", "dd", "teacher-involved", "onestep", "skip")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SampleConfig:
    """What to sample. Steps are AR steps (LlamaGen tokens, VAR scales).

    method: one of METHODS. t_list: DD timesteps (None: (0,) or (0, t2) from `steps` and the
    preset's DDDefaults). split: None = the preset's (teacher-involved: its first
    `split_teacher_involved` value when it has one). teacher_involved: (n, m) of
    "pre-trained-n-m". teacher_choice: multinomial | flow | greedy, used by the teacher,
    teacher-involved, skip and onestep methods. skip: k of skip-k. marginals: a pairs dataset
    folder whose tokens estimate onestep*'s marginals (None: `marginal_samples` fresh teacher
    samples). classes: "balanced", "random" or a tuple of class ids (cycled, balanced).
    captions: caption feature file of a text-conditional teacher (`pairs.captions`; sample i
    uses row i mod R, as in `gen-pairs`); required for those teachers, refused for others."""

    teacher: str
    method: str = "dd"
    tokenizer_ckpt: str | None = None
    student: str | None = None
    steps: int = 1
    t_list: tuple[int, ...] | None = None
    split: int | None = None
    teacher_involved: tuple[int, int] | None = None
    teacher_choice: str = "multinomial"
    official_prefix_quirk: bool = False
    skip: int = 1
    marginals: str | None = None
    marginal_samples: int = 512
    num: int = 16
    batch_size: int = 16
    seed: int = 0
    classes: str | tuple[int, ...] = "balanced"
    captions: str | None = None
    flow_steps: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    out: str | None = None
    pngs: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.teacher_choice not in CHOICES:
            raise ValueError(f"teacher choice must be one of {', '.join(CHOICES)}")
        if self.num < 1 or self.batch_size < 1:
            raise ValueError("num and batch_size must be >= 1")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if isinstance(self.classes, str) and self.classes not in LABEL_MODES:
            raise ValueError(f"classes must be {' or '.join(LABEL_MODES)} or a list of ids")
        if self.method == "teacher-involved" and self.teacher_involved is None:
            raise ValueError("method teacher-involved needs teacher_involved=(n, m)")
        if self.official_prefix_quirk and self.method != "teacher-involved":
            raise ValueError("official_prefix_quirk applies to teacher-involved sampling only")


@dataclass
class SampleResult:
    """tokens: (M, N) int64 (DD methods: nearest codewords of the final latents); labels,
    index: (M,) int64; images: (M, 3, H, W) uint8. Times in seconds: generation (network +
    flow map), VQ decoding; `steps` the AR/DD network passes per image."""

    method: str
    label: str
    steps: int
    tokens: Tensor
    labels: Tensor
    index: Tensor
    images: Tensor
    seconds_generate: float
    seconds_decode: float
    settings: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @property
    def seconds_per_image(self) -> float:
        return (self.seconds_generate + self.seconds_decode) / max(1, len(self.index))


def resolve_t_list(cfg: SampleConfig, dd) -> tuple[int, ...]:
    """DD timesteps of a dd / teacher-involved config; `dd`: the preset's DDDefaults."""
    if cfg.method == "teacher-involved":
        return (0, int(cfg.teacher_involved[1]))
    if cfg.t_list is not None:
        return tuple(int(t) for t in cfg.t_list)
    if cfg.steps == 1:
        return (0,)
    if cfg.steps == 2:
        return (0, int(dd.t2))
    raise ValueError(f"steps must be 1 or 2 (or give t_list), got {cfg.steps}")


def resolve_split(cfg: SampleConfig, dd) -> int:
    if cfg.split is not None:
        return int(cfg.split)
    if cfg.method == "teacher-involved" and dd.split_teacher_involved:
        return int(dd.split_teacher_involved[0])
    return int(dd.split)


def method_label(cfg: SampleConfig, t_list: tuple[int, ...]) -> tuple[str, int]:
    """(a Table-1 name of the method, network passes per image)."""
    if cfg.method == "teacher":
        return f"teacher ({cfg.teacher_choice})", -1
    if cfg.method == "dd":
        return f"DD {len(t_list)}-step", len(t_list)
    if cfg.method == "teacher-involved":
        n, m = cfg.teacher_involved
        return f"DD pre-trained-{n}-{m} ({cfg.teacher_choice})", -1
    if cfg.method == "skip":
        return f"skip-{cfg.skip}", -1
    return "onestep*", 1


def batch_inputs(teacher: Teacher, cfg: SampleConfig, index: np.ndarray,
                 captions: Captions | None = None) -> tuple[Tensor, Condition, np.ndarray]:
    """(noise (B, N, d) on the teacher's device, Condition, (B,) choice seeds) of samples.
    captions: the caption features of a text-conditional teacher (`Prepared.captions`)."""
    lay = teacher.layout
    noise = sample_noise(cfg.seed, index, lay.num_positions, teacher.codebook_dim)
    device = teacher.dd_codebook().device
    if teacher.num_classes == 0:
        if captions is None:
            raise ValueError(f"{teacher.name} is text-conditional: give caption features "
                             "(`--captions FILE`, docs/pairs.md)")
        cond = captions.condition(caption_rows(index, captions.rows)).to(device)
        return noise.to(device), cond, choice_seeds(cfg.seed, index)
    if isinstance(cfg.classes, str):
        labels = sample_labels(cfg.seed, index, cfg.classes, list(range(teacher.num_classes)))
    else:
        bad = [c for c in cfg.classes if not 0 <= int(c) < teacher.num_classes]
        if bad:
            raise ValueError(f"classes {bad} outside [0, {teacher.num_classes})")
        labels = sample_labels(cfg.seed, index, "balanced", [int(c) for c in cfg.classes])
    return noise.to(device), Condition(labels=labels.to(device)), choice_seeds(cfg.seed, index)


@dataclass
class Prepared:
    """What a run needs besides the models: resolved DD settings, onestep* marginals and the
    caption features of a text-conditional teacher."""

    t_list: tuple[int, ...] = (0,)
    split: int = 0
    marginals: Tensor | None = None  # (N, V) float32, onestep* only
    captions: Captions | None = None


@torch.no_grad()
def generate_batch(teacher: Teacher, student: Student | None, cfg: SampleConfig,
                   prep: Prepared, index: np.ndarray) -> tuple[Tensor, Tensor | None, Tensor]:
    """Samples `index` -> (tokens (B, N) int64, DD latents (B, N, d) or None, labels (B,):
    the class labels, or the caption rows of a text-conditional teacher)."""
    noise, cond, seeds = batch_inputs(teacher, cfg, index, prep.captions)
    tokens, latents = _run_method(teacher, student, cfg, prep, noise, cond, seeds)
    if cond.labels is None:
        return tokens, latents, torch.from_numpy(caption_rows(index, prep.captions.rows))
    return tokens, latents, cond.labels


def _run_method(teacher: Teacher, student: Student | None, cfg: SampleConfig, prep: Prepared,
                noise: Tensor, cond: Condition, seeds: np.ndarray
                ) -> tuple[Tensor, Tensor | None]:
    codebook = teacher.dd_codebook().float()
    choose = make_chooser(cfg.teacher_choice, noise=noise, layout=teacher.layout,
                          codebook=codebook, row_seeds=seeds, flow_steps=cfg.flow_steps)
    if cfg.method == "teacher":
        return sample_teacher(teacher, cond, choose), None
    if cfg.method == "skip":
        return sample_skip(teacher, cond, cfg.skip, choose), None
    if cfg.method == "onestep":
        return sample_onestep(prep.marginals, teacher.layout, len(cond), choose), None
    if student is None:
        raise ValueError(f"method {cfg.method} needs a student")
    if cfg.method == "dd":
        out = sample_dd(student, noise, cond, prep.t_list, prep.split, codebook)
    else:
        n, m = cfg.teacher_involved
        out = sample_teacher_involved(student, teacher, noise, cond, n, m, prep.split, codebook,
                                      choose, official_prefix_quirk=cfg.official_prefix_quirk)
    return out.tokens, out.latents


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def sample_with(teacher: Teacher, student: Student | None, cfg: SampleConfig,
                prep: Prepared | None = None) -> SampleResult:
    """Sample `cfg.num` images in batches of `cfg.batch_size` with loaded models.

    prep: resolved settings (default: `prepare(teacher, cfg)`; onestep* estimates its
    marginals there)."""
    from ardistill.sampling.models import prepare

    prep = prepare(teacher, cfg) if prep is None else prep
    device = teacher.dd_codebook().device
    toks, imgs, labels = [], [], []
    t_gen = t_dec = 0.0
    for first in range(0, cfg.num, cfg.batch_size):
        index = np.arange(first, min(cfg.num, first + cfg.batch_size), dtype=np.int64)
        _sync(device)
        t0 = time.perf_counter()
        tokens, latents, lab = generate_batch(teacher, student, cfg, prep, index)
        _sync(device)
        t1 = time.perf_counter()
        images = (teacher.decode_tokens(tokens.to(device)) if latents is None
                  else teacher.decode_latents(latents))
        _sync(device)
        t_dec += time.perf_counter() - t1
        t_gen += t1 - t0
        toks.append(tokens.cpu())
        imgs.append(to_uint8(images.float().cpu()))
        labels.append(lab.cpu())
    label, steps = method_label(cfg, prep.t_list)
    if steps < 0:
        steps = _teacher_steps(teacher, cfg)
    settings = {k: v for k, v in asdict(cfg).items()}
    settings.update(t_list=list(prep.t_list), split=prep.split,
                    parameters=network_parameters(teacher, student, cfg.method))
    if prep.captions is not None:
        settings["condition"] = prep.captions.identity()  # labels = caption rows
    return SampleResult(cfg.method, label, steps, torch.cat(toks), torch.cat(labels),
                        torch.arange(cfg.num), torch.cat(imgs), t_gen, t_dec, settings)


def network_parameters(teacher: Teacher, student: Student | None, method: str) -> int:
    """Parameters of the generating network (Table 1's #Param): the student for DD methods,
    the teacher's AR model (VQ excluded) for teacher and skip, 0 for onestep*."""
    if method == "onestep":
        return 0
    net = student if method in ("dd", "teacher-involved") else (
        getattr(teacher, "gpt", None) or getattr(teacher, "model", None))
    if not isinstance(net, torch.nn.Module):
        return 0
    return sum(p.numel() for p in net.parameters())


def _teacher_steps(teacher: Teacher, cfg: SampleConfig) -> int:
    """Network passes per image of the methods that run the teacher."""
    s = teacher.layout.num_steps
    if cfg.method == "teacher":
        return s
    if cfg.method == "skip":
        return s - cfg.skip
    n, m = cfg.teacher_involved  # one DD step when n > 0, the teacher's m - n, one at m
    return int(n > 0) + (m - n) + int(m < s)


def write_outputs(result: SampleResult, out: str | Path, pngs: bool = True) -> dict:
    """Files of a run in `out`: images/NNNNNN.png, grid.png, samples.npz (ADM layout: arr_0
    uint8 (M, H, W, 3), arr_1 labels), tokens.npz (tokens, labels, index), sample.json.
    Labels are the caption rows for a text-conditional teacher."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"npz": str(save_npz(out / "samples.npz", result.images, result.labels)),
             "grid": str(save_grid(result.images[:64], out / "grid.png", nrow=8))}
    if pngs:
        save_pngs(result.images, out / "images")
        files["pngs"] = str(out / "images")
    np.savez(out / "tokens.npz", tokens=result.tokens.numpy(), labels=result.labels.numpy(),
             index=result.index.numpy())
    files["tokens"] = str(out / "tokens.npz")
    record = {"method": result.method, "label": result.label, "steps": result.steps,
              "num": len(result.index), "seconds_generate": result.seconds_generate,
              "seconds_decode": result.seconds_decode,
              "seconds_per_image": result.seconds_per_image, "settings": result.settings,
              "files": files}
    (out / "sample.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    files["json"] = str(out / "sample.json")
    result.files = files
    return files


def sample(cfg: SampleConfig, load=None) -> SampleResult:
    """Load the models named in `cfg`, sample, and write the files when `cfg.out` is set.
    load: a `sampling.models.TeacherLoader` (default: presets and checkpoint paths)."""
    from ardistill.sampling.models import load_models, load_teacher_from_spec, prepare

    teacher, student, hints = load_models(cfg, load or load_teacher_from_spec)
    result = sample_with(teacher, student, cfg, prepare(teacher, cfg, hints=hints))
    if cfg.out is not None:
        write_outputs(result, cfg.out, cfg.pngs)
    return result
