"""`evaluate(cfg)`: the function behind `ardistill eval SAMPLES [--ref REF] [--teacher T]`.

Image metrics (FID, Inception Score, precision and recall) against a reference, and with a
teacher the token metrics: the teacher's NLL of the samples' tokens in bits per token (and of
`teacher_samples`, the teacher's own), and token agreement with `flow_reference` (the teacher +
flow map's tokens for the same noise). Tokens come from the tokens.npz that `ardistill sample`
writes beside SAMPLES. The result is one flat dict, written as JSON beside the samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ardistill.evaluation.images import evaluate_images, load_reference
from ardistill.evaluation.tokens import read_tokens, token_metrics
from ardistill.metrics.inception import OFFICIAL_SHA256_PREFIX
from ardistill.metrics.networks import load_feature_extractor
from ardistill.teachers.registry import load_teacher
from ardistill.utils.files import atomic_write_json
from ardistill.utils.images import load_images
from ardistill.utils.locks import check_output_path, output_folder


@dataclass(frozen=True)
class EvalConfig:
    """samples: an ADM-layout `.npz` or a directory of PNGs; ref: `mnist`, an `.npz` (images
    and/or mu/sigma) or a PNG directory (None: no image metrics); teacher (+ tokenizer_ckpt):
    adds the token metrics; features: "mnist" | "inception" (with inception_weights)."""

    samples: str
    ref: str | None = None
    teacher: str | None = None
    tokenizer_ckpt: str | None = None
    flow_reference: str | None = None
    teacher_samples: str | None = None
    features: str = "mnist"
    inception_weights: str | None = None
    batch_size: int = 256
    device: str = "cpu"
    is_splits: int = 10
    pr_k: int = 3
    fid_method: str = "eigh"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.ref is None and self.teacher is None:
            raise ValueError("nothing to evaluate: give --ref (image metrics) and/or --teacher "
                             "(token metrics)")
        if self.features == "inception" and not self.inception_weights and self.ref:
            raise ValueError("--features inception needs --inception-weights PATH "
                             "(pt_inception-2015-12-05-6726825d.pth; ardistill never "
                             "downloads it)")
        if self.teacher is None and (self.flow_reference or self.teacher_samples):
            raise ValueError("--flow-reference and --teacher-samples need --teacher")


def default_out(samples: Path) -> Path:
    return samples / "eval.json" if samples.is_dir() else samples.with_suffix(".eval.json")


def evaluate(cfg: EvalConfig) -> dict:
    """All metrics the config asks for, as one dict (`format_result` prints it)."""
    samples_path = Path(cfg.samples)
    if not samples_path.exists():
        raise FileNotFoundError(f"samples not found: {samples_path}")
    result: dict = {"samples": str(samples_path)}
    if cfg.ref is not None:
        result.update(image_metrics(cfg, samples_path))
    if cfg.teacher is not None:
        result.update(_token_metrics(cfg, samples_path))
    return result


def image_metrics(cfg: EvalConfig, samples_path: Path) -> dict:
    extractor = load_feature_extractor(cfg.features, inception_weights=cfg.inception_weights,
                                       device=cfg.device)
    samples, labels = load_images(samples_path)
    prompts = _prompts(samples_path)
    digits = None
    if prompts is not None and labels is not None:  # labels are caption rows
        digits = prompt_digits(prompts, labels)
        if not bool((digits >= 0).any()):  # no prompt names a digit: nothing to score
            digits = None
    result = evaluate_images(samples, load_reference(cfg.ref), extractor,
                             batch_size=cfg.batch_size, is_splits=cfg.is_splits, pr_k=cfg.pr_k,
                             fid_method=cfg.fid_method, progress=cfg.progress,
                             labels=labels if _labels_are_classes(samples_path) else digits)
    if digits is not None:
        result["prompt_accuracy"] = result["class_accuracy"]
        result["prompts_naming_a_digit"] = int((digits >= 0).sum())
    sha = getattr(extractor, "weights_sha256", None)
    if sha is not None:
        result["inception_weights_sha256"] = sha
        result["inception_weights_official"] = sha.startswith(OFFICIAL_SHA256_PREFIX)
    return result


def prompt_digits(prompts: list[str], rows) -> torch.Tensor:
    """(N,) int64: the digit each sample's prompt names (`text.mnist_captions.digit_of_prompt`;
    -1 where it names none), rows: (N,) caption rows of the samples."""
    from ardistill.text.mnist_captions import digit_of_prompt

    named = [digit_of_prompt(p) for p in prompts]
    return torch.tensor([named[int(r)] for r in rows], dtype=torch.long)


def _condition(samples_path: Path) -> dict:
    """The condition record of the run beside a samples file (its sample.json), or {}."""
    meta = (samples_path if samples_path.is_dir() else samples_path.parent) / "sample.json"
    if not meta.is_file():
        return {}
    try:
        cond = json.loads(meta.read_text()).get("settings", {}).get("condition") or {}
    except (json.JSONDecodeError, AttributeError):
        return {}
    return cond if isinstance(cond, dict) else {}


def _prompts(samples_path: Path) -> list[str] | None:
    """The prompt texts of a run conditioned on `--prompts` (its sample.json), else None."""
    cond = _condition(samples_path)
    prompts = cond.get("prompts") if cond.get("kind") == "caption" else None
    return prompts if isinstance(prompts, list) and prompts else None


def _labels_are_classes(samples_path: Path) -> bool:
    """Labels of a samples file are class ids unless the run beside it was conditioned on
    captions (its sample.json says so; its labels are caption rows)."""
    return _condition(samples_path).get("kind") != "caption"


def _token_metrics(cfg: EvalConfig, samples_path: Path) -> dict:
    teacher = load_teacher(cfg.teacher, tokenizer_ckpt=cfg.tokenizer_ckpt, device=cfg.device)
    ref = read_tokens(cfg.flow_reference) if cfg.flow_reference else None
    own = read_tokens(cfg.teacher_samples) if cfg.teacher_samples else None
    return token_metrics(teacher, read_tokens(samples_path), flow_reference=ref,
                         teacher_samples=own, batch_size=cfg.batch_size)


def _num(v, fmt=".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def format_result(r: dict) -> str:
    """The human-readable lines `ardistill eval` prints for the image metrics."""
    is_text = "n/a"
    if r["inception_score"] is not None:
        is_text = (f"{r['inception_score']:.4f} +- {r['inception_score_std']:.4f} "
                   f"({r['is_splits']} splits)")
    n_ref = "statistics only" if r["num_reference"] is None else f"{r['num_reference']} images"
    return "\n".join([
        f"samples    {r['num_samples']} images",
        f"reference  {r['reference']} ({n_ref}; FID from {r['fid_reference']})",
        f"features   {r['features']}",
        f"FID        {_num(r['fid'])}" + (f" +- {r['fid_std']:.4f} (bootstrap std, "
                                          f"{r['fid_resamples']} resamples)"
                                          if r.get("fid_std") is not None else ""),
        f"IS         {is_text}",
        f"precision  {_num(r['precision'])}   (k={r['pr_k']})",
        f"recall     {_num(r['recall'])}",
        f"class acc. {_num(r.get('class_accuracy'))}   (the classifier reads the requested "
        "class)" if "prompt_accuracy" not in r else
        f"prompt acc. {_num(r['prompt_accuracy'])}   (the classifier reads the digit the prompt "
        f"names; {r['prompts_naming_a_digit']} samples have one)",
    ])


def format_tokens(r: dict) -> str:
    quarters = r.get("token_agreement_by_quarter")
    q = "" if not quarters else " (by quarter of the steps: " + \
        ", ".join(f"{x:.3f}" for x in quarters) + ")"
    return "\n".join([
        f"teacher NLL       {_num(r['teacher_nll_bits'])} bits/token "
        f"(teacher's own samples: {_num(r['teacher_samples_nll_bits'])})",
        f"token agreement   {_num(r['token_agreement'])}{q}",
    ])


def result_path(samples: str | Path, out: str | Path | None) -> Path:
    """Where the JSON goes, checked before anything is computed (a file or folder in the way
    is an error now, not after minutes of metrics)."""
    path = Path(out) if out else default_out(Path(samples))
    return check_output_path(path, what="eval output", is_file=True)


def write_result(result: dict, out: str | Path | None) -> Path:
    """The JSON, written atomically while holding its folder's lock."""
    path = result_path(result["samples"], out)
    with output_folder(path.parent, what="eval output folder"):
        atomic_write_json(path, result, indent=2, sort_keys=False)
    return path


