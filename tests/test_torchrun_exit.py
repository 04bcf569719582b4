"""Clean multi-process exits: consecutive 2-process torchrun jobs of gen-pairs and train all exit
0 (the short CI loop of scripts/stress_torchrun.py; run it with --runs 50 by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stress_torchrun.py"


@pytest.mark.slow  # 6 torchrun jobs, about a minute
def test_consecutive_torchrun_jobs_exit_zero(cli_env):
    res = subprocess.run([sys.executable, str(SCRIPT), "--runs", "3"], env=cli_env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "0 of 6 jobs failed" in res.stdout
