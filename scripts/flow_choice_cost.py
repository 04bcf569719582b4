"""The DD flow choice's solver against pair generation's exact one, on the shipped students' own
inputs: each case samples one batch with `ardistill sample`'s code path, captures what the flow
choice is asked (noise, softmax(logits / T), codebook), and solves it three ways, timed side by
side (steady state, median of --repeats), with their token agreement: "exact" (`FlowMap` with
`solver_config`, pair generation's), "dense" (`flow.dense.DenseFlowMap` with
`choice_solver_config`, sampling's choice for codebooks up to `DENSE_MAX_VOCAB` in sessions
8-10, and still where the compiled kernel does not apply) and "choice"
(`core.choosers.choice_map`, what sampling runs: the pruned `FlowMap` with
`choice_solver_config`, its steps in C, since session 11).

    python scripts/flow_choice_cost.py [--batches 1,64] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from ardistill.bench.timing import machine_header, steady_time
from ardistill.core.choosers import choice_map, choice_solver_config, solver_config
from ardistill.flow.dense import DenseFlowMap
from ardistill.flow.solver import FlowMap
from ardistill.sampling.run import load_models, prepare, sample_with
from ardistill.sampling.spec import DD2Method, DDMethod, Models, SampleConfig

CASES = [("mnist-llamagen", DDMethod(1, choice="flow", temperature=0.5)),
         ("mnist-llamagen", DDMethod(2, choice="flow", temperature=0.35)),
         ("mnist-llamagen", DD2Method("flow", 1.3)),
         ("mnist-var", DDMethod(1, choice="flow", temperature=0.7)),
         ("mnist-var", DDMethod(2, choice="flow", temperature=0.7)),
         ("mnist-var", DD2Method("flow", 1.0))]


def captured_inputs(teacher_name: str, method, batch: int) -> list[tuple]:
    """The (noise, probs, codebook) of every flow-map call of one sampled batch."""
    calls, solves = [], {cls: cls.solve for cls in (FlowMap, DenseFlowMap)}

    def spy(solve):
        def spied(self, noise, probs):
            calls.append((noise.clone(), probs.clone(), self.codebook))
            return solve(self, noise, probs)
        return spied

    cfg = SampleConfig(Models(teacher_name, dtype="fp32"), method, num=batch, batch_size=batch,
                       seed=0)
    teacher, student, hints = load_models(cfg)
    for cls, solve in solves.items():
        cls.solve = spy(solve)
    try:
        sample_with(teacher, prepare(cfg, teacher, student, hints), cfg)
    finally:
        for cls, solve in solves.items():
            cls.solve = solve
    return calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,64")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_header("fp32"))
    print(f"{'teacher':<15} {'method':<22} {'batch':>5} {'rows':>6} {'exact ms':>9} "
          f"{'dense ms':>9} {'choice ms':>9} {'vs exact':>8} {'vs dense':>9} "
          f"{'same as exact':>13} {'same as dense':>14}")
    for teacher_name, method in CASES:
        for b in (int(x) for x in args.batches.split(",")):
            calls = captured_inputs(teacher_name, method, b)
            rows = sum(n.shape[:-1].numel() for n, _, _ in calls)
            maps = {"exact": [FlowMap(cb, solver_config(None)) for _, _, cb in calls],
                    "dense": [DenseFlowMap(cb, choice_solver_config(None, cb.shape[0]))
                              for _, _, cb in calls],
                    "choice": [choice_map(cb) for _, _, cb in calls]}
            ms, tokens = {}, {}
            for name, fms in maps.items():
                def run(fms=fms, calls=calls):
                    return [fm(n, p) for fm, (n, p, _) in zip(fms, calls)]
                tokens[name] = torch.cat([t.flatten() for t in run()])
                ms[name] = steady_time(run, args.repeats).median * 1e3
            same = {k: float((tokens[k] == tokens["choice"]).double().mean())
                    for k in ("exact", "dense")}
            label = (f"DD {method.steps}-step" if isinstance(method, DDMethod) else "DD2 1-step")
            label += f" T {method.temperature:g}"
            print(f"{teacher_name:<15} {label:<22} {b:>5} {rows:>6} {ms['exact']:>9.1f} "
                  f"{ms['dense']:>9.1f} {ms['choice']:>9.1f} "
                  f"{ms['exact'] / ms['choice']:>7.1f}x {ms['dense'] / ms['choice']:>8.1f}x "
                  f"{same['exact']:>12.2%} {same['dense']:>13.2%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
