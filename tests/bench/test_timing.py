"""bench.timing: warm-up until steady, median/min with counts, the machine header."""

from __future__ import annotations

import itertools

import pytest

from ardistill.bench import timing
from ardistill.bench.timing import interleaved_times, machine_header, steady_time


def test_warmup_runs_until_two_calls_agree(monkeypatch):
    # call durations: slow set-up calls first, then steady ones
    durations = iter([5.0, 3.0, 1.0, 1.02, 1.0, 1.1, 0.9, 1.0])
    clock = itertools.count()
    now = [0.0]

    def fake_perf_counter():
        next(clock)
        return now[0]

    def fn():
        now[0] += next(durations)
        return "out"

    monkeypatch.setattr(timing.time, "perf_counter", fake_perf_counter)
    t = steady_time(fn, repeats=3)
    assert t.warmup == 4 and t.repeats == 3 and t.result == "out"
    assert t.runs == pytest.approx((1.0, 1.1, 0.9)) and t.median == pytest.approx(1.0)
    assert t.min == pytest.approx(0.9)
    assert "median of 3" in t.text() and "4 warm-up" in t.text()


def test_warmup_is_bounded_and_repeats_checked():
    calls = []
    t = steady_time(lambda: calls.append(1), repeats=2, max_warmup=3, tolerance=-1.0)
    assert t.warmup == 3 and len(calls) == 5
    with pytest.raises(ValueError, match="repeats"):
        steady_time(lambda: None, repeats=0)


def test_interleaved_times_rotate_the_order_and_charge_each_fn_its_own_calls(monkeypatch):
    """Each fn is warmed up, then called once per round in an order rotated every round; a
    slow phase of the machine (here: the 4th timed call overall) lands in one run of one fn,
    and each fn's timing holds its own durations only."""
    now, order, n_timed = [0.0], [], [0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])

    def make(name, dt):
        def fn():
            order.append(name)
            if len(order) > 4:  # after the warm-up (2 calls each: they agree at once)
                n_timed[0] += 1
            now[0] += dt * (10 if n_timed[0] == 4 else 1)
            return name
        return fn

    a, b = interleaved_times([make("a", 1.0), make("b", 2.0)], repeats=3)
    assert order == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    assert a.warmup == b.warmup == 2 and a.repeats == b.repeats == 3
    assert a.result == "a" and b.result == "b"
    assert a.runs == pytest.approx((1.0, 10.0, 1.0)) and b.runs == pytest.approx((2.0,) * 3)
    assert a.median == pytest.approx(1.0) and b.median == pytest.approx(2.0)
    with pytest.raises(ValueError, match="repeats"):
        interleaved_times([lambda: None], repeats=0)


def test_machine_header_names_cpu_threads_torch_dtype():
    h = machine_header("bf16")
    assert h.startswith("CPU ") and "threads" in h and "torch" in h and h.endswith("dtype bf16")
