"""The demo's text-to-image section: the shipped `mnist-t2i` teacher and its shipped DD
students on typed prompts (the paper's Table 3, in small). Nothing is trained here: the rows
are what `ardistill sample --teacher mnist-t2i --prompts FILE [--steps 1|2]` gives.

Prompts: `eval_samples` prompts balanced over the digits (`text.mnist_captions.balanced_prompts`,
seed 11, the fidelity protocol's prompt set, cut short). Per method: FID against the held-out
digits, prompt accuracy (the classifier reads the digit the prompt names), seconds per image
at batch 1 (median after warm-up, VQ decoding included) and the speedup over the teacher; one
grid row per method over the first prompts.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import torch

from ardistill.evaluation.images import evaluate_images
from ardistill.sampling.run import load_models, prepare, sample_with
from ardistill.sampling.spec import DDMethod, Models, SampleConfig, TeacherMethod
from ardistill.text.mnist_captions import balanced_prompts
from ardistill.utils.images import save_grid

TEACHER = "mnist-t2i"
PROMPT_SEED = 11
GRID_PROMPTS = 10  # one digit each: prompts 0..9 name the digits 0..9


def text_to_image(cfg, out: Path, extractor, reference) -> tuple[list[dict], Path, Path]:
    """Rows (one per method), the prompts file and the grid PNG, written under out/mnist-t2i."""
    folder = Path(out) / TEACHER
    folder.mkdir(parents=True, exist_ok=True)
    texts, digits = balanced_prompts(cfg.eval_samples, PROMPT_SEED)
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(texts) + "\n", encoding="utf-8")
    labels = torch.tensor(digits)
    rows, grid = [], []
    for method in (TeacherMethod(), DDMethod(1), DDMethod(2)):
        sc = SampleConfig(Models(TEACHER), method, num=cfg.eval_samples,
                          batch_size=cfg.sample_batch, seed=cfg.seed, prompts=str(prompts))
        teacher, student, hints = load_models(sc)
        result = sample_with(teacher, prepare(sc, teacher, student, hints), sc)
        m = evaluate_images(result.images, reference, extractor, labels=labels,
                            batch_size=cfg.sample_batch, fid_resamples=0)
        # the demo's timing rule (`stages.bench_methods`): batch 1, generation + VQ decoding,
        # median of bench_repeats after bench_warmup runs, a fresh seed each
        one = SampleConfig(Models(TEACHER), method, num=1, batch_size=1, seed=cfg.seed + 2,
                           prompts=str(prompts))
        sampler = prepare(one, teacher, student, hints)
        times = []
        for i in range(cfg.bench_warmup + cfg.bench_repeats):
            r = sample_with(teacher, sampler, replace(one, seed=cfg.seed + 2 + i))
            if i >= cfg.bench_warmup:
                times.append(r.seconds_generate + r.seconds_decode)
        rows.append({"teacher": TEACHER, "method": result.label, "steps": result.steps,
                     "num_samples": cfg.eval_samples, "fid": m["fid"],
                     "precision": m["precision"], "recall": m["recall"],
                     "prompt_accuracy": m["class_accuracy"],
                     "seconds_per_image": statistics.median(times)})
        grid.append(result.images[:GRID_PROMPTS])
    base = rows[0]
    for r in rows:
        r["fid_ratio"] = r["fid"] / base["fid"]
        r["speedup"] = base["seconds_per_image"] / r["seconds_per_image"]
    png = save_grid(torch.cat(grid), folder / "grid.png", nrow=GRID_PROMPTS)
    return rows, prompts, png


def text_markdown(rows: list[dict]) -> list[str]:
    """The report's text-to-image section."""
    if not rows:
        return []
    n = rows[0]["num_samples"]
    lines = ["", f"## Text to image: `{TEACHER}` and its shipped students on typed prompts", "",
             f"{n} prompts balanced over the digits (seed {PROMPT_SEED}, e.g. \"a narrow thin "
             "handwritten zero leaning right\"); the shipped students, not trained by this run. "
             "Prompt acc.: the classifier reads the digit the prompt names. FID against the "
             "held-out digits (few samples: compare rows). Time: seconds per image at batch 1, "
             "VQ decoding included.", "",
             "| method | steps | FID | FID / teacher | recall | prompt acc. | s / image | "
             "speedup |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        lines.append(f"| {r['method']} | {r['steps']} | {r['fid']:.2f} | {r['fid_ratio']:.2f}x "
                     f"| {recall} | {r['prompt_accuracy']:.3f} | {r['seconds_per_image']:.4f} | "
                     f"{r['speedup']:.1f}x |")
    return lines
