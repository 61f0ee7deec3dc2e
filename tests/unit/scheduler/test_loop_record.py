"""The scheduler's per-minute record of its loop durations (written for the UI page)."""

from __future__ import annotations

import logging

import pytest

from airflow_kestra_provider.scheduler import loop_record
from airflow_kestra_provider.scheduler.loop_record import LoopRecord, LoopRecordWriter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_minute_so_far_is_due_every_few_seconds_and_an_ended_minute_at_once():
    clock = Clock(600.0)  # the start of minute 600
    record = LoopRecord(job_id=7, hostname="h", every=10.0, clock=clock)
    assert record.figures() is None
    for i in range(1, 101):  # 0.01 .. 1.00 s
        clock.now = 600.0 + i * 0.05
        assert record.add(i / 100, busy=i % 2 == 0) == []
    clock.now = 611.0
    [so_far] = record.add(0.5, busy=False)
    assert (so_far.job_id, so_far.hostname, so_far.minute) == (7, "h", 600.0)
    assert (so_far.loops, so_far.busy_loops) == (101, 50)
    assert so_far.seconds == pytest.approx(50.5 + 0.5)
    assert (so_far.p50, so_far.p99, so_far.max) == (0.5, 0.99, 1.0)
    clock.now = 615.0
    assert record.add(0.1, busy=True) == []  # written 4 s ago
    clock.now = 661.0  # the next minute: the ended one's final figures, then the new one's
    ended, current = record.add(2.0, busy=True)
    assert (ended.minute, ended.loops, ended.busy_loops) == (600.0, 102, 51)
    assert (current.minute, current.loops, current.busy_loops, current.max) == (660.0, 1, 1, 2.0)


def test_a_failed_write_is_logged_at_most_every_few_minutes_and_never_raised(monkeypatch, caplog):
    def broken():
        raise RuntimeError('relation "kestra_scheduler_loop" does not exist\nmore')

    monkeypatch.setattr(loop_record.claims, "session_scope", broken)
    clock = Clock(0.0)
    writer = LoopRecordWriter(clock=clock)
    figures = LoopRecord(1, "h", every=0.0, clock=Clock(0.0)).add(0.1, busy=False)
    with caplog.at_level(logging.WARNING, logger=loop_record.__name__):
        writer.write(figures)
        clock.now = 100.0
        writer.write(figures)
        clock.now = 301.0
        writer.write(figures)
        writer.write([])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert 'RuntimeError: relation "kestra_scheduler_loop" does not exist)' in warnings[0]
    assert "airflow db migrate" in warnings[0]
