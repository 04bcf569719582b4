"""The one registry of the files that ship inside ardistill (this folder).

Every shipped file is found here by name, whoever reads it:

- the embedded teachers: `<preset>_<part>.safetensors` + a JSON record (names in each
  preset's `extra`, `teacher_files`);
- the DD students of the embedded teachers: `student_file(preset, steps, method)` (fp16
  safetensors with the training export's metadata) + `student_record(preset)`;
- the MNIST feature network of `ardistill eval --features mnist`: `FEATURES`.

`shipped_path(name)` is the path of an installed file; `shipped_dir()` the folder the zoo
commands write new shipped files to (`src/ardistill/weights` in a source checkout).
"""

from __future__ import annotations

import json
from pathlib import Path

from ardistill.errors import CheckpointError

FEATURES = "mnist_features.safetensors"
FEATURES_RECORD = "mnist_features.json"
STUDENT_STEPS = (1, 2)
STUDENT_METHODS = ("dd1", "dd2")


def shipped_dir() -> Path:
    """The folder of the shipped files (this package's folder)."""
    return Path(__file__).resolve().parent


def shipped_path(name: str, what: str = "shipped file", hint: str = "") -> Path:
    """The path of shipped file `name`; CheckpointError naming it (and `hint`, how to rebuild
    it) when the installed package lacks it."""
    path = shipped_dir() / name
    if not path.is_file():
        raise CheckpointError(f"the {what} {name} is missing from the installed ardistill "
                              f"package (ardistill/weights){'; ' + hint if hint else ''}")
    return path


def shipped_json(name: str) -> dict:
    """A shipped JSON record."""
    return json.loads(shipped_path(name, "shipped record").read_text())


def _stem(preset: str) -> str:
    return preset.replace("-", "_")


def student_file_name(preset: str, steps: int, method: str = "dd1") -> str:
    """`mnist_llamagen_dd1-1step.safetensors` (DD1, 1 step), `..._dd1-2step...` (DD1, 2
    steps), `..._dd2-1step...` (DD2, one step)."""
    if method not in STUDENT_METHODS:
        raise ValueError(f"shipped students are of methods {STUDENT_METHODS}, not {method!r}")
    if steps not in STUDENT_STEPS or (method == "dd2" and steps != 1):
        raise ValueError(f"no shipped {method} students of {steps} steps")
    return f"{_stem(preset)}_{method}-{steps}step.safetensors"


def student_record_name(preset: str) -> str:
    return f"{_stem(preset)}_students.json"


def student_file(preset: str, steps: int, method: str = "dd1") -> Path:
    """The shipped student of an embedded teacher preset; CheckpointError when this package
    has none."""
    name = student_file_name(preset, steps, method)
    what = f"{steps}-step {method.upper()} student of {preset}"
    if not (shipped_dir() / name).is_file():
        raise CheckpointError(
            f"no shipped {what} in this package ({name} missing); train one (`ardistill "
            "train`, docs/training.md) and give the exported file (--student PATH)")
    return shipped_dir() / name
