"""End-to-end sampling speed: teacher vs DD student (1, 2 steps, teacher-involved), VQ decoding.

Steady-state seconds per image at batch 1 and at a throughput batch, with full-size presets and
random weights (speed does not depend on the weights): one warm-up run, then the median of
`--repeats` timed runs of each setting. Generation (network passes, plus the teacher's
sampling) and VQ decoding are timed separately and reported both apart and together, because
VQ decoding dominates at 256 px on a CPU. The speedup is the teacher's time over the setting's,
measured in the same run at the same batch.

Settings: teacher (multinomial, the teacher's own sampling loop with KV cache), DD 1-step
(t_list [0]), DD 2-step ([0, t2]) with the preset's released split, and teacher-involved
pre-trained-N-M (multinomial teacher, default N = 0, M = num_steps // 8).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ardistill.bench.timing import Timing, machine_header, steady_time
from ardistill.errors import UserError
from ardistill.sampling.methods import sample_dd, sample_teacher, sample_teacher_involved
from ardistill.student.registry import build_student
from ardistill.teachers.base import MultinomialChooser
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.utils import dtypes


@dataclass
class Options:
    """The options of `ardistill bench sample` (the command line's flags, same names)."""

    presets: str = 'llamagen-b'
    batch: int = 8
    repeats: int = 3
    teacher_involved: str | None = None
    no_teacher: bool = False
    dtype: str = 'auto'
    device: str = 'cpu'
    threads: int = 0
    compile: bool = False
    quick: bool = False
    json: Path | None = None



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[Timing,
                                                                                       object]:
    """(the steady-state Timing of `fn`, the last result): warm-up until steady
    (`bench.timing.steady_time`)."""
    t = steady_time(fn, repeats, device)
    return t, t.result


def _settings(preset, teacher, ti: tuple[int, int] | None, with_teacher: bool):
    """(name, steps, generate(noise, cond) -> (tokens | None, latents | None)) per setting."""
    dd, cb = preset.dd, teacher.dd_codebook()
    out = []
    if with_teacher:
        def gen_teacher(noise, cond, student):
            return sample_teacher(teacher, cond, MultinomialChooser(torch.Generator()
                                                                   .manual_seed(0))), None
        out.append(("teacher", teacher.layout.num_steps, gen_teacher))
    for t_list in ((0,), (0, dd.t2)):
        def gen_dd(noise, cond, student, t_list=t_list):
            return None, sample_dd(student, noise, cond, t_list, dd.split, cb).latents
        out.append((f"DD {len(t_list)}-step", len(t_list), gen_dd))

    def gen_dd2(noise, cond, student):  # one pass, the logits head at every position
        return None, sample_dd(student, noise, cond, (0,), teacher.layout.num_steps,
                               cb).latents
    out.append(("DD2 1-step", 1, gen_dd2))
    if ti is not None:
        n, m = ti
        split = dd.split_teacher_involved[0] if dd.split_teacher_involved else dd.split
        split = max(split, m) if teacher.layout.kind == "raster" else split

        def gen_ti(noise, cond, student):
            choose = MultinomialChooser(torch.Generator().manual_seed(0))
            return None, sample_teacher_involved(student, teacher, noise, cond, n, m, split,
                                                 cb, choose).latents
        steps = int(n > 0) + (m - n) + int(m < teacher.layout.num_steps)
        out.append((f"DD pre-trained-{n}-{m}", steps, gen_ti))
    return out


def bench_preset(name: str, args, batches: list[int], repeats: int) -> list[dict]:
    preset = all_presets()[name]
    device = torch.device(args.device)
    teacher = load_teacher(name, random_weights=True, device=device,
                           dtype=dtypes.resolve(args.dtype, args.device))
    student = build_student(teacher)
    if args.compile:
        student.compile(dynamic=False)
    s = teacher.layout.num_steps
    ti = _parse_ti(args.teacher_involved, s)
    print(f"{name}: {s} AR steps, student {sum(p.numel() for p in student.parameters()) / 1e6:.1f}"
          f" M parameters, split {preset.dd.split}, t2 {preset.dd.t2}", flush=True)
    rows = []
    for b in batches:
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(b, teacher.layout.num_positions, teacher.codebook_dim,
                            generator=gen).to(device)
        cond = teacher.sample_conditions(b, gen).to(device)
        base = None
        for label, steps, fn in _settings(preset, teacher, ti, not args.no_teacher):
            with torch.no_grad():
                t_gen, (tok, lat) = median_time(
                    lambda fn=fn, noise=noise, cond=cond: fn(noise, cond, student), repeats,
                    device)
                dec = ((lambda tok=tok: teacher.decode_tokens(tok)) if lat is None
                       else (lambda lat=lat: teacher.decode_latents(lat)))
                t_dec, _ = median_time(dec, repeats, device)
            row = {"preset": name, "setting": label, "steps": steps, "batch": b,
                   "generate_s_per_image": t_gen.median / b, "vq_s_per_image": t_dec.median / b,
                   "total_s_per_image": (t_gen.median + t_dec.median) / b,
                   "generate_min_s_per_image": t_gen.min / b, "repeats": t_gen.repeats,
                   "warmup": t_gen.warmup}
            if label == "teacher":
                base = row
            if base is not None:
                row["speedup_generate"] = base["generate_s_per_image"] / row[
                    "generate_s_per_image"]
                row["speedup_total"] = base["total_s_per_image"] / row["total_s_per_image"]
            print(format_row(row), flush=True)
            rows.append(row)
    return rows


def _parse_ti(text: str | None, num_steps: int) -> tuple[int, int] | None:
    if text == "none":
        return None
    if text is None:
        return (0, max(1, num_steps // 8))
    try:
        n, m = (int(x) for x in text.split(","))
    except ValueError as e:
        raise UserError(f"--teacher-involved takes N,M or none, got {text!r}") from e
    return n, m


HEADER = (f"{'preset':<14} {'setting':<24} {'steps':>5} {'batch':>5} {'gen s/img':>10} "
          f"{'gen min':>9} {'VQ s/img':>9} {'total s/img':>11} {'speedup gen':>11} "
          f"{'speedup total':>13}")


def format_row(r: dict) -> str:
    sg, st = r.get("speedup_generate"), r.get("speedup_total")
    return (f"{r['preset']:<14} {r['setting']:<24} {r['steps']:>5} {r['batch']:>5} "
            f"{r['generate_s_per_image']:>10.4f} {r.get('generate_min_s_per_image', 0):>9.4f} "
            f"{r['vq_s_per_image']:>9.4f} "
            f"{r['total_s_per_image']:>11.4f} "
            f"{'-' if sg is None else f'{sg:.1f}x':>11} {'-' if st is None else f'{st:.1f}x':>13}")


def run(args: Options) -> int:
    if args.batch < 1 or args.repeats < 1:
        raise UserError("--batch and --repeats must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    known = all_presets()
    names = [p.strip() for p in args.presets.split(",") if p.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        raise UserError(f"unknown presets {bad}; known: {', '.join(sorted(known))}")
    repeats = 1 if args.quick else args.repeats
    batches = sorted({1, 2 if args.quick else args.batch})
    dtype = dtypes.name_of(dtypes.resolve(args.dtype, args.device))
    print(machine_header(dtype, args.device) + (", compiled student" if args.compile else ""),
          flush=True)
    print(f"times: median of {repeats} timed runs after warm-up until steady (two consecutive "
          "untimed runs within 10%); 'gen min' is the fastest run", flush=True)
    print(HEADER, flush=True)
    rows = []
    for name in names:
        rows += bench_preset(name, args, batches, repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0
