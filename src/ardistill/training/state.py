"""Run folder and checkpoints that resume exactly (docs/training.md, "Resume").

    RUN/config.json                 the TrainConfig (+ teacher identity) of the run
    RUN/checkpoints/step_00000100.pt  model, EMA, optimizer, scheduler, step, RNG states
    RUN/log.jsonl                   one JSON record per logged step / evaluation
    RUN/student.safetensors         the exported EMA student (student/files.py)

Checkpoints are written to a temporary name and renamed (atomic on POSIX) with their sha256 in
`step_N.pt.sha256`; a resume verifies it and falls back to the previous checkpoint when the
newest is corrupt. The newest `keep_last` are kept. Data order and timesteps are pure
functions of (seed, step) (training/data.py), so `step` is the data position; the torch CPU RNG
(and CUDA RNGs when used) are saved anyway, so that any op drawing from them continues its
stream.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ardistill.errors import CheckpointError, TrainingDiverged
from ardistill.utils.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_with,
    sha256_file,
)

CKPT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"step_(\d{8})\.pt")


def checkpoint_path(run: Path, step: int) -> Path:
    return Path(run) / CKPT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of complete checkpoints in RUN, oldest first (temporary files ignored)."""
    d = Path(run) / CKPT_DIR
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT_RE.fullmatch(p.name))]
    return sorted(out)


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def save_checkpoint(run: str | Path, step: int, payload: dict, keep_last: int) -> Path:
    """Atomically write `payload` as the checkpoint of `step` with its sha256 beside it
    (`step_N.pt.sha256`, written first); prune to the newest keep_last. A failure (a full disk)
    leaves no temporary file."""
    path = checkpoint_path(Path(run), step)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        try:
            torch.save(payload, f)
        except RuntimeError as e:  # torch wraps the OS's write error (a full disk)
            if isinstance(e.__context__, OSError):
                raise e.__context__ from e
            raise

    atomic_write_with(path, write, before_rename=lambda tmp: atomic_write_bytes(
        checksum_path(path), (sha256_file(tmp) + "\n").encode()))
    for _, old in list_checkpoints(run)[:-keep_last]:
        old.unlink(missing_ok=True)
        checksum_path(old).unlink(missing_ok=True)
    return path


def verify_checkpoint(path: str | Path) -> None:
    """CheckpointError when the file's sha256 differs from the one recorded beside it (bytes
    changed on disk). A checkpoint of an older ardistill without a recorded sha256 passes."""
    path = Path(path)
    side = checksum_path(path)
    if not side.is_file():
        return
    want = side.read_text().strip()
    if sha256_file(path) != want:
        raise CheckpointError(f"{path}: corrupt (its sha256 differs from the one recorded at "
                              f"save time in {side.name})")


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by `save_checkpoint` (checksum verified; weights_only: tensors and
    plain data)."""
    verify_checkpoint(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip / pickle: name the file
        raise CheckpointError(f"{path}: not a readable training checkpoint ({e})") from e
    if not isinstance(obj, dict) or "step" not in obj or "model" not in obj:
        raise CheckpointError(f"{path}: not an ardistill training checkpoint")
    return obj


def write_run_config(run: Path, record: dict) -> None:
    """RUN/config.json (atomic)."""
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / "config.json", record, indent=2)


def truncate_log(path: Path, step: int) -> None:
    """Drop JSONL records after `step` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def diverged(run: str | Path, step: int, what: str, advice: str) -> TrainingDiverged:
    """The error of a non-finite loss or gradient at `step` (1-based), naming the checkpoint a
    rerun of the same command resumes from."""
    ckpts = list_checkpoints(run)
    last = f"the last good checkpoint {ckpts[-1][1]} is intact" if ckpts else \
        "no checkpoint was written yet"
    return TrainingDiverged(f"step {step}: {what}; training stopped before updating the "
                            f"weights ({last}). {advice}, then rerun the same command to "
                            "resume from the last checkpoint")
