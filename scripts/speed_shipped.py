"""Seconds per image of what `ardistill sample` gives on the embedded teachers: the teacher and
the shipped DD students with their recorded token choice (auto), and with the argmax for
comparison, at batch 1 and at a throughput batch; VQ decoding included. Side by side:
`bench.timing.interleaved_times` (each method warmed up until two untimed runs agree within
10%, then --repeats rounds that run every method of a teacher and batch once, in rotated
order; medians); ratios are against the teacher timed in the same rounds.

    python scripts/speed_shipped.py [--batches 1,64] [--repeats 7] [--threads 1] [--json F]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from ardistill.bench.timing import interleaved_times, machine_header
from ardistill.demo.report import TEXT_TEACHERS
from ardistill.errors import CheckpointError
from ardistill.sampling.run import load_models, prepare, sample_with
from ardistill.sampling.spec import DD2Method, DDMethod, Models, SampleConfig, TeacherMethod
from ardistill.text.mnist_captions import balanced_prompts
from ardistill.utils import dtypes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,64")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--teachers", default="mnist-llamagen,mnist-var,mnist-t2i")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    header = machine_header(dtypes.name_of(dtypes.resolve("auto")))
    print(header)
    print(f"{'teacher':<15} {'method':<26} {'kind':<8} {'batch':>5} {'s/image':>9} {'min':>9} "
          f"{'speedup':>8}")
    rows = []
    methods = [TeacherMethod(), DDMethod(1), DDMethod(1, choice="argmax"), DDMethod(2),
               DDMethod(2, choice="argmax"), DD2Method(), DD2Method("argmax")]
    # text-conditional teachers sample the protocol's prompts (balanced over the digits)
    prompts = Path(tempfile.mkdtemp()) / "prompts.txt"
    prompts.write_text("\n".join(balanced_prompts(64, 11)[0]) + "\n")
    for teacher_name in args.teachers.split(","):
        text = teacher_name in TEXT_TEACHERS
        for b in (int(x) for x in args.batches.split(",")):
            cases = []  # (label, kind, run): what `sample` gives, and the argmax forced
            for method in methods:
                kind = "argmax" if getattr(method, "choice", None) == "argmax" else "default"
                cfg = SampleConfig(Models(teacher_name), method, num=b, batch_size=b, seed=0,
                                   prompts=str(prompts) if text else None)
                try:
                    teacher, student, hints = load_models(cfg)
                except CheckpointError:  # no shipped student of this kind (DD2 of mnist-t2i)
                    continue
                sampler = prepare(cfg, teacher, student, hints)
                cases.append((sampler.label, kind,
                              lambda t=teacher, s=sampler, c=cfg: sample_with(t, s, c)))
            times = interleaved_times([run for _, _, run in cases], args.repeats)
            base = times[0].median / b  # the teacher
            for (label, kind, _), t in zip(cases, times):
                per = t.median / b
                print(f"{teacher_name:<15} {label:<26} {kind:<8} {b:>5} {per:>9.4f} "
                      f"{t.min / b:>9.4f} {base / per:>7.1f}x", flush=True)
                rows.append({"teacher": teacher_name, "label": label, "kind": kind, "batch": b,
                             "seconds_per_image": per, "min_seconds_per_image": t.min / b,
                             "speedup": base / per, "repeats": t.repeats})
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
