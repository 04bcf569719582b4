"""The shipped DD students of the embedded teachers (trained by `ardistill demo`, copied here
by `ardistill demo --export-students`): where they live and how sampling finds them.

    shipped_student("mnist-llamagen", steps=1)  # zoo/weights/mnist_llamagen_dd1.safetensors

Files are fp16 safetensors with the training export's metadata (docs/training.md), loadable
with `ardistill.training.load_trained_student(path)`.
"""

from __future__ import annotations

from pathlib import Path

from ardistill.utils.checkpoint import CheckpointError

STEPS = (1, 2)


def shipped_weights_dir() -> Path:
    """The package folder of shipped weights (`ardistill/zoo/weights`)."""
    return Path(__file__).resolve().parent / "weights"


def _stem(preset: str) -> str:
    return preset.replace("-", "_")


def student_file_name(preset: str, steps: int) -> str:
    if steps not in STEPS:
        raise ValueError(f"shipped students exist for steps {STEPS}, not {steps}")
    return f"{_stem(preset)}_dd{steps}.safetensors"


def record_file_name(preset: str) -> str:
    return f"{_stem(preset)}_students.json"


def shipped_student(preset: str, steps: int) -> Path:
    """The shipped `steps`-step student of an embedded teacher preset; CheckpointError when
    this package has none."""
    path = shipped_weights_dir() / student_file_name(preset, steps)
    if not path.is_file():
        raise CheckpointError(
            f"no shipped {steps}-step DD student for teacher {preset!r} in this package "
            f"({path.name} missing); train one with `ardistill demo --export-students` or "
            "give an exported student file (--student PATH)")
    return path
