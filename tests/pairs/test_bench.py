"""`ardistill bench pairs` runs end to end and reports consistent numbers."""

from __future__ import annotations

import json

from ardistill.bench import pairs as bench_pairs
from ardistill.cli import main


def test_bench_pairs_quick(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "pairs", "--presets", "mnist-var,no-such", "--quick", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "no-such: no such preset" in text and "pairs per CPU-second" in text
    assert text.startswith("CPU ") and "dtype fp32" in text.splitlines()[0]  # the machine
    (r,) = json.loads(out.read_text())
    assert r["preset"] == "mnist-var" and r["num"] == 2
    assert r["flow_calls"] == 6 and r["flow_rows"] == 2 * 130  # 6 scales, 130 tokens
    assert 0 < r["flow_seconds"] < r["seconds"] and 0 < r["flow_share"] < 1
    assert r["pairs_per_s"] > 0 and 0 < r["flow_cpu_share"] <= 1.05


def test_bench_pairs_library_call(capsys):
    """The workflow's own entry point takes its Options (what the command builds)."""
    assert bench_pairs.run(bench_pairs.Options(presets="mnist-var", quick=True)) == 0
    assert "pairs per CPU-second" in capsys.readouterr().out
