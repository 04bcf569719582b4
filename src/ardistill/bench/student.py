"""Student sampling speed: seconds per image of the DD steps at batch 1 and a throughput batch.

Full-size presets with random weights (speed does not depend on them): the teacher preset's
student (`student.registry.build_student`), its released DD settings (`preset.dd`: 1-step
t_list [0], 2-step [0, t2], split), timed through `student.procedure.few_step` from fresh
Gaussian noise. Reported: the median over `--repeats` timed runs after one warm-up run, per
image. VQ decoding is not included (it is the same for every sampler; `ardistill bench sample`
reports it). `--official-dd DIR` also times the official DD code (the `LlamaGen` folder of a
microsoft/distilled_decoding checkout, imported in a subprocess) running the eval_fewstep.py
loop at the same settings (same GPT size, fp32), right after ours for each setting, so that
both see the same machine load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ardistill.bench.timing import int8_run, machine_header, steady_time
from ardistill.errors import UserError
from ardistill.student.procedure import few_step
from ardistill.student.registry import build_student
from ardistill.teachers.fast_linear import set_cpu_int8
from ardistill.teachers.int8 import use_int8
from ardistill.teachers.llamagen.config import GPT_SIZES
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.utils import dtypes


@dataclass
class Options:
    """The options of `ardistill bench student` (the command line's flags, same names)."""

    presets: str = 'llamagen-b'
    steps: str = '1,2'
    batch: int = 8
    repeats: int = 5
    dtype: str = 'auto'
    device: str = 'cpu'
    threads: int = 0
    compile: bool = False
    int8: bool = False
    quick: bool = False
    official_dd: Path | None = None
    json: Path | None = None



def t_list_for(preset, steps: int) -> list[int]:
    if steps == 1:
        return [0]
    if steps == 2:
        return [0, preset.dd.t2]
    raise UserError(f"--steps takes 1 and/or 2, got {steps}")


def time_student(student, teacher, t_list: list[int], split: int, batch: int, repeats: int,
                 seed: int = 0) -> dict:
    """Median seconds per image of `few_step` at `batch` (noise and conditions drawn once)."""
    gen = torch.Generator().manual_seed(seed)
    n, d = teacher.layout.num_positions, teacher.codebook_dim
    noise = torch.randn(batch, n, d, generator=gen).to(teacher.device)
    cond = teacher.sample_conditions(batch, gen).to(teacher.device)
    codebook = teacher.dd_codebook().to(teacher.device)
    with torch.no_grad():  # warm-up until steady (compilation, kernel selection excluded)
        t = steady_time(lambda: few_step(student, noise, cond, t_list, split, codebook),
                        repeats, teacher.device)
    return {"batch": batch, "steps": len(t_list), "t_list": list(t_list), "split": split,
            "s_per_image": t.median / batch, "min_s_per_image": t.min / batch,
            "repeats": t.repeats, "warmup": t.warmup, "runs": [r / batch for r in t.runs]}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


_OFFICIAL = r"""
import json, statistics, sys, time, torch
n_threads, batch, repeats, split = (int(a) for a in sys.argv[1:5])
t_list = [int(a) for a in sys.argv[5].split(",")]
size = sys.argv[6]
if n_threads > 0:
    torch.set_num_threads(n_threads)
from autoregressive.models.dd import GPT_models
g = torch.Generator().manual_seed(0)
codebook = torch.nn.functional.normalize(torch.randn(16384, 8, generator=g), dim=-1)
m = GPT_models[size](vocab_size=16384, block_size=256, num_classes=1000, cls_token_num=1,
                        model_type="c2i", codebook_dim=8, codebook=codebook).eval()
with torch.no_grad():
    m.output.weight.normal_(0, 0.02, generator=g)  # the official init zeroes the head
noise = torch.randn(batch, 256, 8, generator=g)
labels = torch.randint(0, 1000, (batch,), generator=g)

def perturb_data(data, t, noise):  # eval_fewstep.py
    mask = (torch.arange(256).unsqueeze(0).expand(batch, 256) >= t.unsqueeze(1)).float()
    return data * (1 - mask[:, :, None]) + noise * mask[:, :, None]

@torch.no_grad()
def sample():  # the eval_fewstep.py loop
    x = noise
    for t_ar in t_list:
        t = torch.zeros([batch]) + t_ar
        x_t = perturb_data(x, t, noise)
        gt_idx = (codebook[:, None, None, :] - x_t).square().sum(dim=-1).argmin(dim=0)
        fp = m.final_predict(x_BLC=x_t, cond_idx=labels, timestep=t, idx=gt_idx)
        x = m.get_final_x_BLC(fp, split)
    return x

runs = []
for r in range(repeats + 1):
    t0 = time.perf_counter()
    sample()
    if r:
        runs.append((time.perf_counter() - t0) / batch)
print(json.dumps({"batch": batch, "steps": len(t_list), "t_list": t_list, "split": split,
                  "s_per_image": statistics.median(runs), "runs": runs}))
"""


def check_official_dd(root: Path) -> None:
    if not (root / "autoregressive" / "models" / "dd.py").is_file():
        raise UserError(f"{root}: not the LlamaGen folder of a distilled_decoding checkout "
                       "(no autoregressive/models/dd.py)")


def official_size(preset) -> str | None:
    """The official dd.py model name ("GPT-B", ...) of a LlamaGen preset, else None."""
    if preset.family != "llamagen":
        return None

    c = preset.model_config
    sizes = [k for k, v in GPT_SIZES.items() if v == (c.n_layer, c.n_head, c.dim)]
    return f"GPT-{sizes[0]}" if sizes and c.model_type == "c2i" else None


def time_official_dd(root: Path, size: str, t_list: list[int], split: int, batch: int,
                     repeats: int, threads: int) -> dict:
    """The official eval_fewstep.py loop on a random-weight DD student of `size` ("GPT-B"),
    in a subprocess importing from `root`."""
    check_official_dd(root)
    argv = [str(threads), str(batch), str(repeats), str(split), ",".join(map(str, t_list)),
            size]
    r = subprocess.run([sys.executable, "-c", _OFFICIAL, *argv], cwd=root,
                       env={**os.environ, "PYTHONPATH": str(root)},
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise UserError(f"the official DD run failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _line(name: str, res: dict) -> str:
    runs = ", ".join(f"{x:.3f}" for x in res["runs"])
    return (f"{name:<26} {res['steps']}-step  batch {res['batch']:>3}  "
            f"{res['s_per_image']:8.3f} s/image  [{runs}]")


def _bench_preset(name: str, args, steps: list[int], batches: list[int], repeats: int):
    preset = all_presets()[name]
    teacher = load_teacher(name, random_weights=True, device=args.device,
                           dtype=dtypes.resolve(args.dtype, args.device))
    try:
        student = build_student(teacher)
    except ValueError as e:
        print(f"{name}: {e}, skipped", flush=True)
        return []
    if args.compile:
        student.compile(dynamic=False)
    params = sum(p.numel() for p in student.parameters())
    dtype = dtypes.name_of(dtypes.resolve(args.dtype, args.device))
    print(f"{name} student: {params / 1e6:.1f} M parameters, split {preset.dd.split}, "
          f"t2 {preset.dd.t2}, {dtype}, device {args.device}"
          f"{', compiled' if args.compile else ''}", flush=True)
    size = official_size(preset) if args.official_dd is not None else None
    out = []
    for s in steps:
        for b in batches:  # each setting: ours, then the official code right after
            t_list = t_list_for(preset, s)
            res = time_student(student, teacher, t_list, preset.dd.split, b, repeats)
            print(_line(f"  ardistill {name}", res), flush=True)
            out.append({"preset": name, "impl": "ardistill", **res})
            if args.int8:  # the same student with int8 linear layers, right after
                res8, why = int8_run(
                    lambda: use_int8(student, compiled=args.compile),
                    lambda: set_cpu_int8(student, False),
                    lambda t_list=t_list, b=b: time_student(student, teacher, t_list,
                                                            preset.dd.split, b, repeats))
                if res8 is None:
                    print(f"  {name} int8: {why}; skipped", flush=True)
                    continue
                print(_line(f"  ardistill {name} int8", res8), flush=True)
                print(f"  {'':<24} int8 speed-up over {dtype}: "
                      f"{res['s_per_image'] / res8['s_per_image']:.2f}x", flush=True)
                out.append({"preset": name, "impl": "ardistill-int8", **res8})
            if size is not None:
                res = time_official_dd(args.official_dd, size, t_list, preset.dd.split, b,
                                       repeats, args.threads)
                print(_line(f"  official DD {size}", res), flush=True)
                ratio = res["s_per_image"] / out[-1]["s_per_image"]
                print(f"  {'':<24} speed-up over the official code: {ratio:.2f}x", flush=True)
                out.append({"preset": name, "impl": "official", **res})
    return out


def run(args: Options) -> int:
    if args.official_dd is not None:
        check_official_dd(args.official_dd)
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError as e:
        raise UserError(f"--steps must be a comma-separated list of 1 and 2: {e}") from e
    if not steps or any(s not in (1, 2) for s in steps):
        raise UserError(f"--steps takes 1 and/or 2, got {args.steps!r}")
    if args.batch < 1 or args.repeats < 1:
        raise UserError("--batch and --repeats must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    batches = sorted({1, 2 if args.quick else args.batch})
    known = all_presets()
    print(machine_header(dtypes.name_of(dtypes.resolve(args.dtype, args.device)), args.device)
          + " (student DD steps only, VQ decoding not included)", flush=True)
    print(f"times: median of {repeats} timed runs after warm-up until steady [all runs]",
          flush=True)
    results = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        if name not in known:
            print(f"{name}: no such preset in this build, skipped", flush=True)
            continue
        results += _bench_preset(name, args, steps, batches, repeats)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0
