"""`ardistill bench pairs` runs end to end and reports consistent numbers."""

from __future__ import annotations

import argparse
import json

from ardistill.bench import pairs as bench_pairs


def test_bench_pairs_quick(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_pairs.add_args(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--presets", "mnist-var,no-such", "--quick", "--json", str(out)])
    assert bench_pairs.run(args) == 0
    text = capsys.readouterr().out
    assert "no-such: no such preset" in text and "pairs per CPU-second" in text
    (r,) = json.loads(out.read_text())
    assert r["preset"] == "mnist-var" and r["num"] == 2
    assert r["flow_calls"] == 6 and r["flow_rows"] == 2 * 130  # 6 scales, 130 tokens
    assert 0 < r["flow_seconds"] < r["seconds"] and 0 < r["flow_share"] < 1
    assert r["pairs_per_s"] > 0 and 0 < r["flow_cpu_share"] <= 1.05
