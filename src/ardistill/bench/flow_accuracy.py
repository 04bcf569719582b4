"""Accuracy of the flow map vs its step count: the table of docs/flow.md.

For each benchmark setting and distribution (`ardistill.flow.reference`), the float64 reference
tokens of `rows` problem rows (seed `seed`) are computed once (or read from `cache_dir`, where
they are stored after computing them: the reference costs minutes per thousand rows on a CPU),
then `FlowMap` runs at every requested `num_steps` and the table prints, per step count: the
token agreement with the reference, the rows that differ, and the mean denoiser evaluations per
token over the whole codebook (full) and over the pruned entries (pruned).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ardistill.flow import DEFAULT_NUM_STEPS, FlowMap, FlowSolverConfig
from ardistill.flow.reference import LOGIT_STD, make_flow_problem, reference_solve

SETTINGS = ("llamagen", "var")
# The baseline solver (DPM-Solver++(2M) on a log-SNR grid, float64): steps -> agreement (%).
BASELINE = {200: 99.67, 600: 99.92}


def reference_tokens(name: str, logit_std: float, rows: int, seed: int,
                     cache_dir: str | None) -> tuple[torch.Tensor, float]:
    """Reference tokens (rows,) int64 and mean reference evaluations per token (nan when a
    cached file has none) of `make_flow_problem(name, rows, logit_std, seed)`. Uses / fills
    `cache_dir/ref_{name}_{logit_std}_{seed}_{rows}.pt` (dict with `tok`, optional `evals`)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"ref_{name}_{logit_std}_{seed}_{rows}.pt"
        if path.is_file():
            d = torch.load(path, map_location="cpu", weights_only=True)
            if d["tok"].shape != (rows,):
                raise ValueError(f"{path}: tok has shape {tuple(d['tok'].shape)}, want ({rows},)")
            ev = d.get("evals")
            return d["tok"], float("nan") if ev is None else ev.double().mean().item()
    noise, probs, C = make_flow_problem(name, rows, logit_std, seed)
    t0 = time.perf_counter()
    r = reference_solve(noise, probs, C)
    print(f"  (reference {name} {logit_std}: {rows} rows in {time.perf_counter() - t0:.0f} s)",
          flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"tok": r.tokens, "evals": r.evals}, path)
    return r.tokens, r.evals.double().mean().item()


def print_accuracy_table(steps: list[int], rows: int, seed: int, cache_dir: str | None,
                         device: torch.device) -> None:
    """Print the agreement / cost table for every setting, distribution and step count."""
    print(f"flow map accuracy vs num_steps ({rows} rows per case, seed {seed}, "
          f"default num_steps = {DEFAULT_NUM_STEPS})")
    print(f"{'setting':9} {'dist':7} {'steps':>5} {'agree %':>8} {'differ':>6} "
          f"{'full evals':>10} {'pruned evals':>12}")
    for name in SETTINGS:
        for dist, std in LOGIT_STD.items():
            ref, ref_evals = reference_tokens(name, std, rows, seed, cache_dir)
            noise, probs, C = (t.to(device) for t in make_flow_problem(name, rows, std, seed))
            for n in steps:
                r = FlowMap(C, FlowSolverConfig(num_steps=n)).solve(noise, probs)
                bad = int((r.tokens.cpu() != ref).sum())
                print(f"{name:9} {dist:7} {n:5d} {100 * (1 - bad / rows):8.2f} {bad:6d} "
                      f"{r.full_evals.float().mean().item():10.2f} "
                      f"{r.pruned_evals.float().mean().item():12.2f}", flush=True)
            print(f"{name:9} {dist:7} {'ref':>5} {100.0:8.2f} {0:6d} {ref_evals:10.1f} "
                  f"{'(adaptive)':>12}", flush=True)
    base = ", ".join(f"{s} steps {a}%" for s, a in BASELINE.items())
    print(f"baseline (DPM-Solver++(2M), log-SNR grid, float64): {base}")
