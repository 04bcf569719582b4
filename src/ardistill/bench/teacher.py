"""Teacher sampling speed: seconds per image at batch 1 and at a throughput batch.

Written against the teacher protocol only: every preset is loaded with random weights (speed
does not depend on them) and sampled with its own DD teacher settings
(`teacher.default_sampling`; LlamaGen: fp32, CFG 2.0, top-k 8000, 256 tokens) through
`teachers.base.decode` with multinomial sampling. Reported: the median over `--repeats` timed
runs after one warm-up run, of the AR sampling time per image; VQ decoding is timed apart.
`--official-llamagen DIR` also times the official LlamaGen `generate()` (a checkout of
FoundationVision/LlamaGen at DIR, imported in a subprocess) at the same settings.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ardistill.bench.timing import int8_run, machine_header
from ardistill.errors import UserError
from ardistill.teachers.base import MultinomialChooser, decode
from ardistill.teachers.int8 import stop_int8, use_int8_teacher
from ardistill.teachers.registry import all_presets, load_teacher
from ardistill.utils import dtypes


@dataclass
class Options:
    """The options of `ardistill bench teacher` (the command line's flags, same names)."""

    presets: str = 'llamagen-b,var-d16'
    batch: int = 16
    repeats: int = 3
    dtype: str = 'auto'
    device: str = 'cpu'
    threads: int = 0
    compile: bool = False
    int8: bool = False
    quick: bool = False
    official_llamagen: Path | None = None
    json: Path | None = None



def time_teacher(teacher, batch: int, repeats: int, seed: int = 0,
                 compile: bool = False) -> dict:
    """Median seconds per image of AR sampling (and of VQ decoding) at `batch`."""
    gen = torch.Generator().manual_seed(seed)
    cond = teacher.sample_conditions(batch, gen).to(teacher.device)
    choose = MultinomialChooser(torch.Generator(device=teacher.device).manual_seed(seed))
    opts = {"compile": True} if compile else {}
    tokens = decode(teacher, cond, teacher.default_sampling, choose, **opts)  # warm-up
    teacher.decode_tokens(tokens)
    sample_s, decode_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tokens = decode(teacher, cond, teacher.default_sampling, choose, **opts)
        _sync(teacher.device)
        t1 = time.perf_counter()
        teacher.decode_tokens(tokens)
        _sync(teacher.device)
        sample_s.append((t1 - t0) / batch)
        decode_s.append((time.perf_counter() - t1) / batch)
    return {"batch": batch, "s_per_image": statistics.median(sample_s),
            "min_s_per_image": min(sample_s), "repeats": repeats,
            "decode_s_per_image": statistics.median(decode_s), "runs": sample_s}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


_OFFICIAL = r"""
import json, statistics, sys, time, torch
n_threads, batch, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if n_threads > 0:
    torch.set_num_threads(n_threads)
from autoregressive.models.gpt import GPT_models
from autoregressive.models.generate import generate
g = torch.Generator().manual_seed(0)
m = GPT_models["GPT-B"](vocab_size=16384, block_size=256, num_classes=1000, cls_token_num=1,
                        model_type="c2i").eval()
with torch.no_grad():
    m.output.weight.normal_(0, 0.02, generator=g)  # the official init zeroes the head
labels = torch.randint(0, 1000, (batch,), generator=g)
kw = dict(cfg_scale=2.0, temperature=1.0, top_k=8000, top_p=1.0, sample_logits=True)
runs = []
for r in range(repeats + 1):
    t = time.perf_counter()
    generate(m, labels, 256, **kw)
    if r:
        runs.append((time.perf_counter() - t) / batch)
print(json.dumps({"batch": batch, "s_per_image": statistics.median(runs), "runs": runs}))
"""


def _check_official(root: Path) -> None:
    if not (root / "autoregressive" / "models" / "generate.py").is_file():
        raise UserError(f"{root}: not a LlamaGen checkout (no autoregressive/models/generate.py)")


def time_official_llamagen(root: Path, batch: int, repeats: int, threads: int) -> dict:
    """Official GPT-B generate() at the DD settings, in a subprocess importing from `root`."""
    _check_official(root)
    r = subprocess.run(
        [sys.executable, "-c", _OFFICIAL, str(threads), str(batch), str(repeats)],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True, text=True, check=False,
    )
    if r.returncode != 0:
        raise UserError(f"the official LlamaGen run failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _line(name: str, res: dict) -> str:
    return (f"{name:<28} batch {res['batch']:>3}  {res['s_per_image']:8.3f} s/image"
            + (f"  (+ VQ decode {res['decode_s_per_image']:.3f} s/image)"
               if "decode_s_per_image" in res else ""))


def _bench_preset(name: str, args, batches: list[int], repeats: int) -> list[dict]:
    teacher = load_teacher(name, random_weights=True, device=args.device,
                           dtype=dtypes.resolve(args.dtype, args.device))
    s = teacher.default_sampling
    print(f"{name}: {teacher.layout.num_steps} steps, cfg {s.cfg_scale}, top-k {s.top_k}, "
          f"top-p {s.top_p}, {args.dtype}, device {args.device}", flush=True)
    out = []
    for b in batches:
        res = time_teacher(teacher, b, repeats, compile=args.compile)
        print(_line(f"  ardistill {name}", res), flush=True)
        out.append({"preset": name, "impl": "ardistill", **res})
        if args.int8:  # the same teacher with int8 linear layers, right after
            res8, why = int8_run(lambda: use_int8_teacher(teacher, compiled=args.compile),
                                 lambda: stop_int8(teacher),
                                 lambda b=b: time_teacher(teacher, b, repeats,
                                                          compile=args.compile))
            if res8 is None:
                print(f"  {name} int8: {why}; skipped", flush=True)
                continue
            print(_line(f"  ardistill {name} int8", res8), flush=True)
            print(f"  {'':<26} int8 speed-up: {res['s_per_image'] / res8['s_per_image']:.2f}x",
                  flush=True)
            out.append({"preset": name, "impl": "ardistill-int8", **res8})
    return out


def run(args: Options) -> int:
    if args.official_llamagen is not None:
        _check_official(args.official_llamagen)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    batches = [1, 4 if args.quick else args.batch]
    known = all_presets()
    print(machine_header(dtypes.name_of(dtypes.resolve(args.dtype, args.device)), args.device),
          flush=True)
    results = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        if name not in known:
            print(f"{name}: no such preset in this build, skipped", flush=True)
            continue
        results += _bench_preset(name, args, batches, repeats)
    if args.official_llamagen is not None:
        for b in batches:
            res = time_official_llamagen(args.official_llamagen, b, repeats, args.threads)
            print(_line("  official LlamaGen GPT-B", res), flush=True)
            for r in results:  # our llamagen-b rows at this batch, measured before
                if r["preset"] == "llamagen-b" and r["batch"] == b:
                    print(f"  {'':<26} {r['impl']}: {res['s_per_image'] / r['s_per_image']:.2f}x "
                          "the official speed", flush=True)
            results.append({"preset": "llamagen-b", "impl": "official", **res})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0
