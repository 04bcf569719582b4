"""Ship a trained student as a default of `ardistill sample`: the exported EMA student of a run
copied into the package's shipped weights as fp16 safetensors (its training metadata kept),
and its entry in `<preset>_students.json` (command, seed, pairs, steps, wall time, the fidelity
numbers of `scripts/fidelity.py`).

    ardistill zoo ship-student --teacher mnist-llamagen --run runs/ml-1s --steps 1 \
        --fidelity runs/fid-ml/fidelity.json --fidelity-row dd1
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from safetensors import safe_open

from ardistill.errors import CheckpointError
from ardistill.teachers.registry import all_presets
from ardistill.utils.files import atomic_write_json, sha256_file
from ardistill.utils.safetensors_io import save_safetensors
from ardistill.weights import shipped_dir, student_file_name, student_record_name


def ship_student(preset: str, run: str | Path, steps: int, method: str = "dd1",
                 fidelity: dict | None = None, out_dir: str | Path | None = None,
                 note: str = "", dd_choice: str | None = None,
                 dd_temperature: float | None = None) -> Path:
    """Copy RUN/student.safetensors into the shipped weights (fp16) and record it; returns the
    written student file. fidelity: the row of `scripts/fidelity.py` measured on this run's
    student (and the teacher's row), kept in the record. dd_choice: "argmax" | "flow", written
    into the file's metadata: what `ardistill sample --dd-choice auto` uses with it;
    dd_temperature: the flow choice's temperature, recorded likewise."""
    if dd_choice not in (None, "argmax", "flow"):
        raise ValueError(f"dd_choice must be argmax or flow, got {dd_choice!r}")
    if dd_temperature is not None and (dd_choice != "flow" or not dd_temperature > 0):
        raise ValueError("dd_temperature (> 0) goes with dd_choice flow")
    p = all_presets().get(preset)
    if p is None or not p.embedded:
        raise ValueError(f"{preset!r} is not an embedded teacher: only their students ship")
    run = Path(run)
    src = run / "student.safetensors"
    if not src.is_file():
        raise CheckpointError(f"{src}: no exported student (finish the run first)")
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata() or {})
        sd = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("teacher_name") != preset:
        raise CheckpointError(f"{src} was trained for {meta.get('teacher_name')}, not {preset}")
    meta.pop("dd_choice", None)
    meta.pop("dd_temperature", None)
    if dd_choice is not None:
        meta["dd_choice"] = dd_choice
    if dd_temperature is not None:
        meta["dd_temperature"] = repr(float(dd_temperature))
    out = Path(out_dir) if out_dir is not None else shipped_dir()
    dst = out / student_file_name(preset, steps, method)
    save_safetensors({k: v.half() if v.is_floating_point() else v for k, v in sd.items()},
                     dst, meta)
    rec_path = out / student_record_name(preset)
    record = json.loads(rec_path.read_text()) if rec_path.is_file() else {"preset": preset}
    record.setdefault("files", {})
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() \
        else {}
    record["files"][f"{method}-{steps}step"] = {
        "name": dst.name, "bytes": dst.stat().st_size, "sha256": sha256_file(dst),
        "dtype": "float16", "method": method, "t_list": json.loads(meta.get("t_list", "[0]")),
        "split": int(meta.get("split", 0)), "dd_choice": dd_choice or "argmax",
        "dd_temperature": dd_temperature if dd_choice == "flow" else None,
        "train": json.loads(meta.get("train", "{}")),
        "run_config": config.get("config", config), "fidelity": fidelity or {}, "note": note,
        "shipped": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if method == "dd1":  # the entry of the demo-trained student it replaces
        record["files"].pop(str(steps), None)
    atomic_write_json(rec_path, record, indent=1)
    return dst
