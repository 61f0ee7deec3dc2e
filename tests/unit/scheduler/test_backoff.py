from __future__ import annotations

import pytest

from airflow_kestra_provider.scheduler.backoff import StepBackoff, build_steps


def test_kestra_defaults_ladder():
    backoff = StepBackoff(0.025, 0.5, 60.0, 5)
    assert backoff.interval_after(0.0) == 0.025
    assert backoff.interval_after(3.7) == 0.025
    assert backoff.interval_after(3.75) == pytest.approx(0.03125)
    assert backoff.interval_after(7.5) == pytest.approx(0.0625)
    assert backoff.interval_after(30.0) == 0.25
    assert backoff.interval_after(59.9) == 0.25
    assert backoff.interval_after(60.0) == 0.5
    assert backoff.interval_after(10_000.0) == 0.5


def test_never_below_minimum_and_monotonic():
    steps = build_steps(0.1, 0.5, 60.0, 8)
    intervals = [s.interval for s in steps]
    assert min(intervals) == 0.1
    assert intervals == sorted(intervals)
    assert [s.idle_after for s in steps] == sorted(s.idle_after for s in steps)


def test_zero_steps_is_min_then_max():
    backoff = StepBackoff(0.025, 0.5, 10.0, 0)
    assert backoff.interval_after(9.9) == 0.025
    assert backoff.interval_after(10.0) == 0.5


def test_idle_clock_starts_at_first_idle_loop_and_busy_resets_it():
    backoff = StepBackoff(0.025, 0.5, 60.0, 5)
    assert backoff.idle(now=100.0) == 0.025
    assert backoff.idle(now=161.0) == 0.5
    backoff.busy()
    assert backoff.idle(now=162.0) == 0.025
    assert backoff.idle(now=170.0) == pytest.approx(0.0625)


def test_failure_backs_off_to_maximum():
    backoff = StepBackoff(0.025, 0.5, 60.0, 5)
    assert backoff.failed(now=5.0) == 0.5
    assert backoff.idle(now=5.1) == 0.5


@pytest.mark.parametrize("args", [(0, 0.5, 60, 5), (0.5, 0.1, 60, 5), (0.1, 0.5, -1, 5), (0.1, 0.5, 60, -1)])
def test_rejects_invalid(args):
    with pytest.raises(ValueError):
        build_steps(*args)
