"""`ardistill bench flow`: the accuracy table (`--sweep`), its reference cache, the CLI checks, and
the speed path's output."""

from __future__ import annotations

import pytest
import torch

from ardistill.bench.flow_accuracy import reference_tokens
from ardistill.cli import main
from ardistill.flow import native
from ardistill.flow.reference import make_flow_problem, reference_solve


def test_reference_tokens_are_cached_and_checked(tmp_path):
    noise, probs, C = make_flow_problem("var", 3, 4.5, seed=7)
    want = reference_solve(noise, probs, C)
    tok, evals = reference_tokens("var", 4.5, 3, 7, str(tmp_path))
    assert torch.equal(tok, want.tokens)
    assert evals == want.evals.double().mean().item()
    path = tmp_path / "ref_var_4.5_7_3.pt"
    assert path.is_file()
    # the cached file is what is read back: change it and the change shows
    torch.save({"tok": tok + 1}, path)
    again, ev = reference_tokens("var", 4.5, 3, 7, str(tmp_path))
    assert torch.equal(again, tok + 1) and ev != ev  # nan: no evals in the file
    torch.save({"tok": tok[:2]}, path)
    try:
        reference_tokens("var", 4.5, 3, 7, str(tmp_path))
    except ValueError as e:
        assert "want (3,)" in str(e)
    else:
        raise AssertionError("a cached file of the wrong shape was accepted")


def test_sweep_prints_the_table(capsys, tmp_path):
    rc = main(["bench", "flow", "--sweep", "4,10", "--agreement-rows", "2", "--seed", "3",
               "--ref-cache", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("llamagen ", "var "))]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (s, d, n) for s in ("llamagen", "var") for d in ("flat", "peaked")
        for n in ("4", "10", "ref")
    ]
    for r in rows:
        assert 0 <= float(r[3]) <= 100 and int(r[4]) in (0, 1, 2)
        if r[2] == "10":  # at the default step count these easy rows agree
            assert r[4] == "0"
    assert len(list(tmp_path.glob("ref_*.pt"))) == 4
    assert "DPM-Solver++(2M)" in out


def test_sweep_checks_its_arguments(capsys):
    assert main(["bench", "flow", "--sweep", "4,x"]) == 2
    assert "--sweep must be comma-separated integers" in capsys.readouterr().err
    assert main(["bench", "flow", "--sweep", "0"]) == 2
    assert "--sweep needs positive step counts" in capsys.readouterr().err


@pytest.mark.slow
def test_speed_run_prints_machine_medians_and_the_teacher_ratio(capsys):
    """The speed path (`--quick`, small teacher batch): the machine header, median and min per
    call with the repeat count, every setting and kernel, and the ratio lines."""
    rc = main(["bench", "flow", "--quick", "--agreement-rows", "0", "--teacher-batch", "2",
               "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("CPU ") and "1 threads" in lines[0] and "dtype fp32" in lines[0]
    assert "median and min of 1 calls" in out
    rows = [ln.split() for ln in lines if ln.startswith(("llamagen ", "var "))]
    kernels = ["native", "torch"] if native.available() else ["torch"]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (s, d, "256", k) for s in ("llamagen", "var") for d in ("flat", "peaked")
        for k in kernels]
    for r in rows:
        assert float(r[4]) > 0 and 0 < float(r[6]) <= float(r[5])  # tokens/s; min <= median
    step = next(ln for ln in lines if ln.startswith("teacher step: "))
    assert "(median of 5, min " in step
    ratios = [ln for ln in lines if ln.startswith("flow map, llamagen")]
    assert len(ratios) == 2 * len(kernels)
    assert all("% of the teacher step (medians; goal <= 10%; mins: " in ln for ln in ratios)
    assert "agreement with the float64 reference" not in out
