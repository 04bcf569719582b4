"""Run logs: RUN/log.jsonl always (rank 0), TensorBoard under RUN/tb when asked (an optional
dependency: a clear error when it is requested but not installed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ardistill.training.state import truncate_log, write_run_config


class RunLogger:
    def __init__(self, run: Path, start: int, *, enabled: bool, tensorboard: bool) -> None:
        self.run, self.enabled = Path(run), enabled
        self.path = self.run / "log.jsonl"
        self.tb = None
        if not enabled:
            return
        self.run.mkdir(parents=True, exist_ok=True)
        truncate_log(self.path, start)  # records after the resumed checkpoint are redone
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ValueError("TensorBoard logging was requested but the tensorboard "
                                 "package is not installed: pip install tensorboard (or drop "
                                 "--tensorboard)") from e
            self.tb = SummaryWriter(log_dir=str(self.run / "tb"), purge_step=start + 1)

    def write_config(self, cfg, teacher, schedule, resumed_from) -> None:
        write_run_config(self.run, {
            "config": cfg.to_json(),
            "teacher": {"name": teacher.name, "family": teacher.family,
                        "fingerprint": teacher.fingerprint()},
            "t_list": list(schedule.t_list), "split": schedule.split,
            "t2_eval": schedule.t2_eval,
            "resumed_from": str(resumed_from) if resumed_from else None,
        })

    def _write(self, rec: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def step(self, step: int, terms: dict[str, float], **extra: float) -> None:
        if not self.enabled:
            return
        rec = {"step": step, "time": time.time(), **{f"loss_{k}" if k != "total" else "loss": v
                                                     for k, v in terms.items()}, **extra}
        self._write(rec)
        if self.tb is not None:
            for k, v in rec.items():
                if k not in ("step", "time"):
                    self.tb.add_scalar(f"train/{k}", v, step)

    def eval(self, step: int, rec: dict) -> None:
        if not self.enabled:
            return
        self._write({"step": step, "eval": {k: v for k, v in rec.items() if k != "step"}})
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step":
                    self.tb.add_scalar(f"eval/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
