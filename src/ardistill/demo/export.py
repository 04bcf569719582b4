"""Ship the demo's students: the EMA students of a full demo, copied into the package's
shipped weights as fp16 safetensors (`ardistill.weights.student_file_name`) with a JSON record
of the command, seed and measured numbers, so `ardistill sample --teacher mnist-llamagen
--steps 1` needs no training."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from ardistill.demo.config import DemoConfig
from ardistill.demo.run import DemoResult
from ardistill.utils.files import sha256_file
from ardistill.utils.safetensors_io import save_safetensors
from ardistill.weights import shipped_dir, student_file_name, student_record_name


def export_students(result: DemoResult, cfg: DemoConfig, command: str,
                    out_dir: str | Path | None = None) -> list[Path]:
    """Write `<preset>_dd1-<steps>step.safetensors` (fp16, the training export's metadata
    kept) for every teacher and step count, and `<preset>_students.json`; returns the paths.
    A student shipped by `ardistill zoo ship-student` (a longer run, with its fidelity
    numbers) is kept: the demo's quick students never replace it."""
    out_dir = Path(out_dir) if out_dir is not None else shipped_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for preset, students in result.students.items():
        rec_path = out_dir / student_record_name(preset)
        old = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
        kept = {k: v for k, v in old.get("files", {}).items() if k.startswith("dd")}
        record = {"preset": preset, "command": command, "seed": cfg.seed,
                  "demo_config": cfg.to_json(), "timings": result.timings,
                  "rows": [r for r in result.rows if r["teacher"] == preset], "files": kept}
        for steps, rec in sorted(students.items()):
            if f"dd1-{steps}step" in kept:
                print(f"kept the shipped {steps}-step student of {preset} (ship-student)")
                continue
            src = Path(rec["export"])
            with safe_open(str(src), "pt") as f:
                meta = dict(f.metadata() or {})
                sd = {k: f.get_tensor(k) for k in f.keys()}
            sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
            # `ardistill sample` reads the split from here: ship the one the demo measured
            meta["split"] = str(int(rec["sample_split"]))
            dst = out_dir / student_file_name(preset, int(steps))
            save_safetensors(sd, dst, meta)  # mode 0644: package data
            record["files"][str(steps)] = {"name": dst.name, "bytes": dst.stat().st_size,
                                           "sha256": sha256_file(dst), "dtype": "float16",
                                           "t_list": rec["t_list"],
                                           "split": rec["sample_split"],
                                           "training_split": rec["split"],
                                           "training": {k: rec[k] for k in (
                                               "steps", "seconds", "final_loss", "eval")}}
            written.append(dst)
        rec_path.write_text(json.dumps(record, indent=1, default=str) + "\n")
        written.append(rec_path)
    return written
