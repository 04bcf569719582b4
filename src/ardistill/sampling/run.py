"""`sample(cfg)`: the function behind `ardistill sample`, one straight line:

    teacher, student, hints = load_models(cfg)           # load
    sampler = prepare(cfg, teacher, student, hints)      # resolve the method into a Sampler
    result = sample_with(teacher, sampler, cfg)          # loop over batches
    write_outputs(result, cfg.out)                       # PNGs, grid, samples.npz, tokens.npz

`sample_with` runs on models already loaded (tests, the demo, the app, bench).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ardistill.core.captions import Captions, caption_source, default_encoder
from ardistill.core.choosers import make_chooser
from ardistill.core.seeds import caption_rows, choice_seeds, sample_labels, sample_noise
from ardistill.errors import CheckpointError, UserError
from ardistill.sampling.baselines import estimate_marginals, sample_onestep, sample_skip
from ardistill.sampling.methods import (
    dd_token_choice,
    sample_dd,
    sample_teacher,
    sample_teacher_involved,
)
from ardistill.sampling.spec import (
    DD2Method,
    DDMethod,
    Method,
    Models,
    OneStepMethod,
    SampleConfig,
    SkipMethod,
    TeacherInvolvedMethod,
    TeacherMethod,
)
from ardistill.student.base import Student
from ardistill.student.files import load_student_file
from ardistill.teachers.base import Condition, Teacher
from ardistill.teachers.int8 import use_int8, use_int8_teacher
from ardistill.teachers.preset import DDDefaults
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.utils import dtypes
from ardistill.utils.files import atomic_write_json, atomic_write_with, tmp_path
from ardistill.utils.images import save_grid, save_npz, save_pngs, to_uint8
from ardistill.utils.locks import check_output_path, output_folder
from ardistill.weights import student_file

# (noise (B, N, d), condition, choice seeds (B,)) -> (tokens (B, N) int64, latents or None)
BatchFn = Callable[[Tensor, Condition, np.ndarray], tuple[Tensor, Tensor | None]]


@dataclass
class Sampler:
    """A method bound to its models and resolved settings. label: the Table-1 name; passes:
    network passes per image; parameters: of the generating network (Table 1's #Param);
    settings: what was resolved (t_list, split, ...), recorded in sample.json."""

    label: str
    passes: int
    parameters: int
    run: BatchFn
    settings: dict = field(default_factory=dict)
    captions: Captions | None = None


@dataclass
class SampleResult:
    """tokens: (M, N) int64 (DD methods: nearest codewords of the final latents); labels,
    index: (M,) int64 (labels: the caption rows of a text-conditional teacher); images:
    (M, 3, H, W) uint8. Times in seconds: generation (network + flow map), VQ decoding."""

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


# ------------------------------------------------------------------------------------- load


def default_student_path(teacher_spec: str, steps: int = 1, method: str = "dd1") -> Path:
    """The shipped student of an embedded preset (`ardistill.weights`)."""
    preset = all_presets().get(teacher_spec)
    if preset is None or not preset.embedded:
        raise CheckpointError(f"no shipped DD student for teacher {teacher_spec!r}: give "
                              "--student PATH (an exported student, `ardistill train`)")
    return student_file(teacher_spec, 2 if steps >= 2 else 1, method)


def load_models(cfg: SampleConfig) -> tuple[Teacher, Student | None, dict]:
    """(teacher, student or None when the method needs none, the student file's hints)."""
    teacher = load_sampling_teacher(cfg.models)
    if not cfg.method.needs_student:
        return teacher, None, {}
    student, hints = load_sampling_student(cfg, teacher)
    return teacher, student, hints


def load_sampling_teacher(m: Models) -> Teacher:
    """The teacher of `m`, on its device and dtype (compiled VAR blocks with m.compile)."""
    teacher = load_teacher(m.teacher, tokenizer_ckpt=m.tokenizer_ckpt, device=m.device,
                           dtype=dtypes.resolve(m.dtype, m.device))
    if m.int8:
        use_int8_teacher(teacher, compiled=m.compile)
    if m.compile and hasattr(teacher, "set_compile"):
        teacher.set_compile(True)  # VAR: compiled blocks in sessions
    return teacher


def student_path(cfg: SampleConfig) -> Path:
    """The student file a student method of `cfg` reads: --student, else the shipped one."""
    m = cfg.models
    return Path(m.student) if m.student else default_student_path(
        m.teacher, cfg.method.num_steps, getattr(cfg.method, "student_method", "dd1"))


def load_sampling_student(cfg: SampleConfig, teacher: Teacher) -> tuple[Student, dict]:
    """(student, hints) of `cfg`'s student method for `teacher` (loaded by
    `load_sampling_teacher(cfg.models)`)."""
    m = cfg.models
    student, hints = load_student_file(teacher, student_path(cfg), device=m.device,
                                       dtype=dtypes.resolve(m.dtype, m.device))
    if m.int8:
        use_int8(student, compiled=m.compile)
    if m.compile:
        student = torch.compile(student)
    return student, hints


# ---------------------------------------------------------------------------------- prepare


def dd_settings(method: DDMethod | TeacherInvolvedMethod, teacher: Teacher,
                hints: dict | None = None) -> tuple[tuple[int, ...], int]:
    """(t_list, split) of a DD method: the spec's values, else the student file's hints, else
    the preset's released DDDefaults."""
    preset = all_presets().get(teacher.name)
    dd = None if preset is None else preset.dd
    if hints:
        t2 = hints["t_list"][1] if len(hints["t_list"]) > 1 else (dd.t2 if dd else 1)
        dd = DDDefaults(t2=int(t2), split=int(hints["split"]),
                        split_teacher_involved=dd.split_teacher_involved if dd else ())
    if isinstance(method, TeacherInvolvedMethod):
        t_list = (0, method.m)
        default_split = (dd.split_teacher_involved[0] if dd and dd.split_teacher_involved
                         else dd.split if dd else None)
    else:
        t_list = method.t_list or ((0,) if method.steps == 1 else
                                   (0, dd.t2) if dd else None)
        default_split = dd.split if dd else None
    split = method.split if method.split is not None else default_split
    if t_list is None or split is None:
        raise ValueError(f"teacher {teacher.name} has no preset DD settings: give split and "
                         "t_list")
    trained = (hints or {}).get("t_list")
    unseen = [t for t in t_list if trained is not None and int(t) not in trained]
    if isinstance(method, DDMethod) and unseen:
        raise ValueError(f"the student was trained for timesteps {list(trained)} only; "
                         f"sampling it at {list(t_list)} feeds it timesteps {unseen} it never "
                         "saw. Use a student trained for them (ardistill train --two-step), "
                         f"or --steps {len(trained)}")
    return tuple(int(t) for t in t_list), int(split)


def prepare(cfg: SampleConfig, teacher: Teacher, student: Student | None,
            hints: dict | None = None,
            on_step: Callable[[int, int], None] | None = None) -> Sampler:
    """Bind `cfg.method` to the models: resolved settings, onestep* marginals, captions.
    on_step(done, total): called at every AR step of the teacher (progress bars); it sees the
    steps only, never the tokens."""
    captions = _captions(cfg, teacher)
    method, codebook = cfg.method, teacher.dd_codebook().float()

    def chooser(choice: str, noise: Tensor, seeds: np.ndarray):
        choose = make_chooser(choice, noise=noise, layout=teacher.layout, codebook=codebook,
                              row_seeds=seeds, flow_steps=cfg.flow_steps)
        if on_step is None:
            return choose
        total = teacher.layout.num_steps

        def counted(step: int, probs: Tensor) -> Tensor:
            on_step(step + 1, total)
            return choose(step, probs)
        return counted

    if method.needs_student and student is None:
        raise ValueError(f"method {method.name} needs a student")
    if isinstance(method, TeacherMethod):
        sampler = Sampler(f"teacher ({method.choice})", teacher.layout.num_steps,
                          _teacher_parameters(teacher), lambda noise, cond, seeds: (
                              sample_teacher(teacher, cond, chooser(method.choice, noise,
                                                                    seeds)), None))
    elif isinstance(method, SkipMethod):
        sampler = Sampler(f"skip-{method.k}", teacher.layout.num_steps - method.k,
                          _teacher_parameters(teacher), lambda noise, cond, seeds: (
                              sample_skip(teacher, cond, method.k,
                                          chooser(method.choice, noise, seeds)), None))
    elif isinstance(method, OneStepMethod):
        marg = estimate_marginals(teacher, method, seed=cfg.seed, batch_size=cfg.batch_size,
                                  captions=captions)
        sampler = Sampler("onestep*", 1, 0, lambda noise, cond, seeds: (
            sample_onestep(marg, teacher.layout, len(cond),
                           chooser(method.choice, noise, seeds)), None))
    elif isinstance(method, (DDMethod, DD2Method)):
        dd2 = isinstance(method, DD2Method)
        if dd2:  # one step, logits everywhere: what the DD2 export records
            method = DDMethod(t_list=(0,), split=teacher.layout.num_steps, choice=method.choice,
                              temperature=method.temperature)
        t_list, split = dd_settings(method, teacher, hints)
        choice = resolve_dd_choice(method.choice, hints)
        temp = resolve_dd_temperature(method.temperature, choice, hints)
        dd_choose = dd_token_choice(choice, codebook, cfg.flow_steps, temp)

        def run_dd(noise, cond, seeds):
            out = sample_dd(student, noise, cond, t_list, split, codebook, dd_choose)
            return out.tokens, out.latents

        label = ("DD2 1-step" if dd2 else f"DD {len(t_list)}-step") + _choice_label(choice, temp)
        sampler = Sampler(label, len(t_list), _parameters(student), run_dd,
                          {"t_list": list(t_list), "split": split, "dd_choice": choice,
                           "dd_temperature": temp})
    else:
        choice = resolve_dd_choice(method.dd_choice, hints)
        sampler = _teacher_involved(method, teacher, student, hints, chooser, codebook,
                                    dd_token_choice(choice, codebook, cfg.flow_steps,
                                                    resolve_dd_temperature(
                                                        method.dd_temperature, choice, hints)))
    sampler.captions = captions
    return sampler


def resolve_dd_choice(choice: str, hints: dict | None) -> str:
    """"auto" -> the student file's recorded choice (`dd_choice` metadata), else "argmax"."""
    return (hints or {}).get("dd_choice", "argmax") if choice == "auto" else choice


def resolve_dd_temperature(temperature: float | None, choice: str, hints: dict | None) -> float:
    """The flow choice's temperature: the given one, else the student file's recorded one,
    else 1 (the argmax has none: 1)."""
    if choice != "flow":
        return 1.0
    return float(temperature if temperature is not None
                 else (hints or {}).get("dd_temperature", 1.0))


def _choice_label(choice: str, temperature: float) -> str:
    if choice == "argmax":
        return ""
    return f" ({choice})" if temperature == 1.0 else f" ({choice}, T {temperature:g})"


def _teacher_involved(method: TeacherInvolvedMethod, teacher: Teacher, student: Student,
                      hints: dict | None, chooser, codebook: Tensor, dd_choose) -> Sampler:
    if method.official_prefix_quirk and teacher.family != "var":
        raise ValueError("official_prefix_quirk applies to VAR teachers only")
    t_list, split = dd_settings(method, teacher, hints)
    n, m = method.n, method.m

    def run(noise, cond, seeds):
        out = sample_teacher_involved(student, teacher, noise, cond, n, m, split, codebook,
                                      chooser(method.choice, noise, seeds),
                                      official_prefix_quirk=method.official_prefix_quirk,
                                      dd_choose=dd_choose)
        return out.tokens, out.latents

    passes = int(n > 0) + (m - n) + int(m < teacher.layout.num_steps)  # DD, teacher, DD
    return Sampler(f"DD pre-trained-{n}-{m} ({method.choice})", passes, _parameters(student),
                   run, {"t_list": list(t_list), "split": split})


def _captions(cfg: SampleConfig, teacher: Teacher) -> Captions | None:
    if teacher.num_classes == 0:
        if cfg.captions is None and cfg.prompts is None:
            own = default_encoder(teacher.name, None) is not None
            raise ValueError(f"{teacher.name} is text-conditional: give caption features "
                             "(`--captions FILE`, docs/pairs.md) or prompts (`--prompts FILE"
                             + ("`, one a line)" if own else " --encoder t5:PATH|minilm`)"))
        encoder = default_encoder(teacher.name, cfg.encoder) if cfg.prompts else cfg.encoder
        return caption_source(cfg.captions, cfg.prompts, encoder)
    if cfg.captions is not None or cfg.prompts is not None:
        flag = "--captions" if cfg.captions is not None else "--prompts"
        raise ValueError(f"{teacher.name} is class-conditional: {flag} applies to "
                         "text-conditional teachers only")
    return None


def _parameters(net) -> int:
    return sum(p.numel() for p in net.parameters()) if isinstance(net, torch.nn.Module) else 0


def _teacher_parameters(teacher: Teacher) -> int:
    """The teacher's AR model (VQ excluded)."""
    return _parameters(getattr(teacher, "gpt", None) or getattr(teacher, "model", None))


# ------------------------------------------------------------------------------------- loop


def batch_inputs(teacher: Teacher, cfg: SampleConfig, index: np.ndarray,
                 captions: Captions | None = None) -> tuple[Tensor, Condition, np.ndarray]:
    """(noise (B, N, d) on the teacher's device, Condition, (B,) choice seeds) of samples."""
    lay = teacher.layout
    noise = sample_noise(cfg.seed, index, lay.num_positions, teacher.codebook_dim)
    device = teacher.dd_codebook().device
    if captions is not None:
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def sample_with(teacher: Teacher, sampler: Sampler, cfg: SampleConfig) -> SampleResult:
    """Sample `cfg.num` images in batches of `cfg.batch_size` with a prepared sampler."""
    device = teacher.dd_codebook().device
    toks, imgs, labels = [], [], []
    t_gen = t_dec = 0.0
    for first in range(0, cfg.num, cfg.batch_size):
        index = np.arange(first, min(cfg.num, first + cfg.batch_size), dtype=np.int64)
        noise, cond, seeds = batch_inputs(teacher, cfg, index, sampler.captions)
        _sync(device)
        t0 = time.perf_counter()
        tokens, latents = sampler.run(noise, cond, seeds)
        _sync(device)
        t1 = time.perf_counter()
        images = (teacher.decode_tokens(tokens.to(device)) if latents is None
                  else teacher.decode_latents(latents))
        _sync(device)
        t_dec += time.perf_counter() - t1
        t_gen += t1 - t0
        toks.append(tokens.cpu())
        imgs.append(to_uint8(images.float().cpu()))
        labels.append(cond.labels.cpu() if cond.labels is not None else
                      torch.from_numpy(caption_rows(index, sampler.captions.rows)))
    return SampleResult(cfg.method.name, sampler.label, sampler.passes, torch.cat(toks),
                        torch.cat(labels), torch.arange(cfg.num), torch.cat(imgs), t_gen, t_dec,
                        _settings(cfg, sampler))


def _settings(cfg: SampleConfig, sampler: Sampler) -> dict:
    out = asdict(cfg)
    out["models"]["dtype_resolved"] = dtypes.name_of(dtypes.resolve(cfg.models.dtype,
                                                                    cfg.models.device))
    out["method"] = {"name": cfg.method.name, **out["method"]}
    out.update(sampler.settings, parameters=sampler.parameters)
    if sampler.captions is not None:
        out["condition"] = sampler.captions.identity()  # labels = caption rows
        if sampler.captions.prompts is not None:  # for prompt accuracy (`ardistill eval`)
            out["condition"]["prompts"] = sampler.captions.prompts
    return out


# ------------------------------------------------------------------------------------ write

# What a run writes into its folder; an earlier run's copies are replaced, nothing else is
# touched.
OUTPUTS = ("images", "samples.npz", "tokens.npz", "grid.png", "sample.json",
           "samples.eval.json")


def check_out_folder(out: Path) -> None:
    """An output folder holds nothing, or an earlier `ardistill sample` run (its sample.json):
    images/ without sample.json are someone else's, and are not overwritten."""
    if (out / "images").exists() and not (out / "sample.json").is_file():
        raise UserError(f"{out} holds an images/ folder that no `ardistill sample` run wrote "
                        "(no sample.json); use another --out")


def _write_pngs(images: Tensor, out: Path) -> Path:
    """images/ replaced as a whole: the new PNGs are written beside it, then swapped in, so an
    earlier run's PNGs never mix with these (and a failure leaves the old folder)."""
    final, tmp = out / "images", tmp_path(out / "images")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_pngs(images, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove(final)
    tmp.rename(final)
    return final


def _remove(path: Path) -> None:
    if path.is_dir():
        old = tmp_path(path.with_name(path.name + "-old"))
        path.rename(old)
        shutil.rmtree(old)
    else:
        path.unlink(missing_ok=True)


def write_outputs(result: SampleResult, out: str | Path, pngs: bool = True) -> dict:
    """Files of a run in `out`: images/NNNNNN.png, grid.png, samples.npz (ADM layout: arr_0
    uint8 (M, H, W, 3), arr_1 labels), tokens.npz (tokens, labels, index), sample.json
    (written last: its presence marks a complete run). Each file is written atomically; an
    earlier run's outputs in `out` are replaced, its evaluation (samples.eval.json) removed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_out_folder(out)
    (out / "sample.json").unlink(missing_ok=True)  # incomplete until rewritten
    _remove(out / "samples.eval.json")
    files = {"npz": str(save_npz(out / "samples.npz", result.images, result.labels)),
             "grid": str(save_grid(result.images[:64], out / "grid.png", nrow=8))}
    if pngs:
        files["pngs"] = str(_write_pngs(result.images, out))
    else:
        _remove(out / "images")
    atomic_write_with(out / "tokens.npz", lambda f: np.savez(
        f, tokens=result.tokens.numpy(), labels=result.labels.numpy(),
        index=result.index.numpy()))
    files["tokens"] = str(out / "tokens.npz")
    files["json"] = str(out / "sample.json")
    record = {"method": result.method, "label": result.label, "steps": result.steps,
              "num": len(result.index), "seconds_generate": result.seconds_generate,
              "seconds_decode": result.seconds_decode,
              "seconds_per_image": result.seconds_per_image, "settings": result.settings,
              "files": files}
    atomic_write_json(out / "sample.json", record, indent=2, sort_keys=False, default=str)
    result.files = files
    return files


def sample(cfg: SampleConfig) -> SampleResult:
    """Load the models named in `cfg`, sample, and write the files when `cfg.out` is set
    (holding the folder's lock: one writer per folder)."""
    if cfg.out is None:
        teacher, student, hints = load_models(cfg)
        return sample_with(teacher, prepare(cfg, teacher, student, hints), cfg)
    check_output_path(cfg.out)  # before any model is loaded
    with output_folder(cfg.out) as out:
        check_out_folder(out)
        teacher, student, hints = load_models(cfg)
        result = sample_with(teacher, prepare(cfg, teacher, student, hints), cfg)
        write_outputs(result, out, cfg.pngs)
    return result


__all__ = ["Method", "SampleConfig", "SampleResult", "Sampler", "load_models",
           "load_sampling_student", "load_sampling_teacher", "prepare", "sample", "sample_with",
           "student_path", "write_outputs"]
