"""The flow DD choice at small batches: the shipped students' `--dd-choice flow` on the
embedded teachers, with the pruned kernels unpadded (the CPU default) and padded to the GEMM's
block of R rows (the previous rule), timed side by side in one run; tokens must be equal.

    python scripts/flow_small_batch.py [--batches 1,64] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

import ardistill.flow.kernels as K
from ardistill.bench.timing import machine_header, steady_time
from ardistill.flow.solver import FlowMap
from ardistill.sampling.run import load_models, prepare, sample_with
from ardistill.sampling.spec import DDMethod, Models, SampleConfig

UNPADDED = FlowMap.pruned_blocks


def padded(self, rows):
    return K.blocks(rows, self.R)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,64")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_header("fp32"))
    print(f"{'teacher':<15} {'method':<26} {'batch':>5} {'padded s':>9} {'unpadded s':>10} "
          f"{'speedup':>8}")
    cases = [("mnist-var", DDMethod(1, choice="flow", temperature=0.7)),
             ("mnist-var", DDMethod(2, choice="flow", temperature=0.7)),
             ("mnist-llamagen", DDMethod(1, choice="flow", temperature=0.5))]
    for teacher_name, method in cases:
        for b in (int(x) for x in args.batches.split(",")):
            cfg = SampleConfig(Models(teacher_name, dtype="fp32"), method, num=b, batch_size=b,
                               seed=0)
            teacher, student, hints = load_models(cfg)
            sampler = prepare(cfg, teacher, student, hints)
            times, tokens = {}, {}
            for name, rule in (("padded", padded), ("unpadded", UNPADDED)):
                FlowMap.pruned_blocks = rule
                tokens[name] = sample_with(teacher, sampler, cfg).tokens
                times[name] = steady_time(lambda t=teacher, s=sampler, c=cfg: sample_with(t, s, c),
                                          args.repeats).median
            FlowMap.pruned_blocks = UNPADDED
            if not torch.equal(tokens["padded"], tokens["unpadded"]):
                raise SystemExit(f"{teacher_name} {sampler.label} batch {b}: tokens differ")
            print(f"{teacher_name:<15} {sampler.label:<26} {b:>5} {times['padded']:>9.4f} "
                  f"{times['unpadded']:>10.4f} {times['padded'] / times['unpadded']:>7.1f}x",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
