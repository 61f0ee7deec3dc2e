from __future__ import annotations

import logging

from airflow_kestra_provider.worker.failures import FailureLog, one_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail(failures: FailureLog, clock: Clock, at: float, message: str = "connection refused") -> None:
    clock.now = at
    try:
        raise ConnectionError(message)
    except ConnectionError:
        failures.failed(0.5)


def test_a_streak_logs_one_traceback_then_a_line_per_quiet_period_then_recovery(caplog):
    clock = Clock()
    failures = FailureLog(logging.getLogger("test.failures"), "worker w: poll", quiet=10.0, clock=clock)
    caplog.set_level(logging.INFO, logger="test.failures")
    for step in range(61):  # 30 s of failures every 0.5 s
        _fail(failures, clock, 100.0 + step * 0.5)
    clock.now = 131.0
    failures.succeeded()
    failures.succeeded()  # no streak: nothing more
    records = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records == [
        ("ERROR", "worker w: poll failed; retrying in 0.50s", True),
        (
            "ERROR",
            "worker w: poll still failing (21 failures in 10s, retrying every 0.50s): "
            "ConnectionError: connection refused",
            False,
        ),
        (
            "ERROR",
            "worker w: poll still failing (41 failures in 20s, retrying every 0.50s): "
            "ConnectionError: connection refused",
            False,
        ),
        (
            "ERROR",
            "worker w: poll still failing (61 failures in 30s, retrying every 0.50s): "
            "ConnectionError: connection refused",
            False,
        ),
        ("WARNING", "worker w: poll works again after 61 failure(s) in 31.0s", False),
    ]


def test_a_new_streak_starts_with_a_traceback_again(caplog):
    clock = Clock()
    failures = FailureLog(logging.getLogger("test.failures"), "heartbeat", clock=clock)
    caplog.set_level(logging.INFO, logger="test.failures")
    _fail(failures, clock, 1.0)
    failures.succeeded()
    _fail(failures, clock, 2.0)
    assert [r.exc_info is not None for r in caplog.records] == [True, False, True]


def test_one_line():
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert one_line(None) == "unknown error"
