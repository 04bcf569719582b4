"""scripts/gpu_check.sh: the one-command GPU check, run here with --device cpu --smoke (the
embedded presets, quick settings) so the script itself cannot rot between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~2.5 min on the 2-core machine
def test_gpu_check_smoke_on_cpu(tmp_path, cli_env):
    out = tmp_path / "gc.json"
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu",
                        "--smoke", "--out", str(out)], env={**cli_env, "PYTHON": sys.executable},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["steps"]) == {"teacher", "sample", "student", "flow", "train"}
    for name, step in doc["steps"].items():
        assert step["rc"] == 0 and not step["timed_out"], (name, step["log_tail"])
    rows = doc["steps"]["sample"]["result"]
    assert {r["setting"] for r in rows} >= {"teacher", "DD 1-step", "DD 2-step"}
    assert all(r["total_s_per_image"] > 0 for r in rows)
    assert doc["steps"]["train"]["result"][0]["samples_per_s"] > 0
    assert "tokens mapped per second" in doc["steps"]["flow"]["log_tail"]


def test_gpu_check_rejects_unknown_arguments():
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown argument --nope" in r.stderr
