from __future__ import annotations

import pytest

from airflow_kestra_provider.worker.backoff import Backoff, Step, compute_steps, idle_sleep

DEFAULTS = (0.025, 0.5, 60.0, 5)


def test_default_steps_match_kestra_table():
    assert compute_steps(*DEFAULTS) == (
        Step(60.0, 0.5),
        Step(30.0, 0.25),
        Step(15.0, 0.125),
        Step(7.5, 0.0625),
        Step(3.75, 0.03125),
        Step(1.875, 0.025),  # 0.015625 is under the minimum
    )


@pytest.mark.parametrize(
    ("idle_for", "sleep"),
    [
        (0.0, 0.025),
        (1.0, 0.025),
        (3.7, 0.025),
        (3.75, 0.03125),
        (7.4, 0.03125),
        (7.5, 0.0625),
        (15.0, 0.125),
        (29.9, 0.125),
        (30.0, 0.25),
        (59.9, 0.25),
        (60.0, 0.5),
        (3600.0, 0.5),
    ],
)
def test_sleep_is_the_longest_passed_step(idle_for, sleep):
    steps = compute_steps(*DEFAULTS)
    assert idle_sleep(steps, idle_for, 0.025) == pytest.approx(sleep)


def test_never_under_minimum_and_zero_steps():
    steps = compute_steps(0.2, 0.5, 60, 10)
    assert min(step.interval for step in steps) == 0.2
    assert compute_steps(0.025, 0.5, 60, 0) == (Step(60, 0.5),)
    assert idle_sleep(compute_steps(0.025, 0.5, 60, 0), 10, 0.025) == 0.025


def test_backoff_restarts_after_a_busy_poll():
    backoff = Backoff(*DEFAULTS)
    backoff.busy(100.0)
    assert backoff.idle_interval(100.1) == 0.025
    assert backoff.idle_interval(170.0) == 0.5
    backoff.busy(170.0)
    assert backoff.idle_interval(171.0) == 0.025
    assert backoff.error_interval() == 0.5


def test_first_empty_poll_counts_idleness_from_itself():
    backoff = Backoff(*DEFAULTS)
    assert backoff.idle_interval(5000.0) == 0.025
    assert backoff.idle_interval(5061.0) == 0.5


def test_rejects_inverted_bounds():
    with pytest.raises(ValueError):
        compute_steps(1.0, 0.5, 60, 5)


def test_a_notified_poller_sleeps_the_maximum_at_once_and_the_steps_go_on_underneath():
    backoff = Backoff(0.025, 0.5, 60.0, 4)
    backoff.busy(100.0)
    assert backoff.idle_interval(100.1, notified=True) == 0.5
    assert backoff.idle_interval(100.2) == 0.025  # not notified (LISTEN down): the step applies
    assert backoff.idle_interval(170.0, notified=True) == 0.5
