from __future__ import annotations

import itertools
import random
import threading
import time

import pytest

from airflow_kestra_provider.bench.rate import OpenLoopSender, pool_size, schedule


class FakeClock:
    """Time moves only when the sender sleeps; each sleep overshoots by a little jitter."""

    def __init__(self, jitter: float = 0.0, seed: int = 1) -> None:
        self.now = 1000.0
        self.jitter = jitter
        self.random = random.Random(seed)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.random.uniform(0, self.jitter)


def test_schedule_is_clock_based():
    assert schedule(4, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        schedule(0, 3)


def test_sends_on_time_with_fake_clock():
    clock = FakeClock(jitter=0.002)
    started: list[float] = []
    sender = OpenLoopSender(
        rate=10,
        count=50,
        send=lambda i: started.append(clock()),
        clock=clock,
        sleep=clock.sleep,
        submit=lambda task: task(),
    )
    records = sender.run()
    assert len(records) == len(started) == 50
    for i, at in enumerate(started):
        due = 1000.0 + i / 10
        assert due <= at <= due + 0.003  # never early, late at most by the sleep jitter
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert min(gaps) > 0.095  # no bunching
    assert sender.sent_ok() == 50
    assert sender.achieved_rate() == pytest.approx(10, rel=0.01)
    assert sender.max_lag() is not None and sender.max_lag() <= 0.003


def test_sends_do_not_wait_for_slow_replies():
    """Each send blocks 5 periods; a closed-loop sender would need ~5x as long. Open loop keeps pace."""
    rate, count, slow = 20.0, 20, 0.25
    starts: dict[int, float] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        with lock:
            starts[i] = time.monotonic()
        time.sleep(slow)

    sender = OpenLoopSender(rate=rate, count=count, send=send)
    t0 = time.monotonic()
    sender.run()
    assert len(starts) == count
    # A closed loop would start send 19 at ~4.75 s; generous tolerance for a busy machine.
    assert starts[count - 1] - t0 < (count - 1) / rate + 0.5
    assert all(r.ok for r in sender.records)


def test_send_errors_are_recorded_not_raised():
    clock = FakeClock()

    def send(i: int) -> None:
        if i % 2:
            raise RuntimeError("HTTP 500")

    sender = OpenLoopSender(5, 4, send, clock=clock, sleep=clock.sleep, submit=lambda task: task())
    sender.run()
    assert sender.sent_ok() == 2
    assert sender.errors() == ["RuntimeError: HTTP 500"] * 2


def test_pool_size_covers_rate():
    assert pool_size(2) == 4
    assert pool_size(25) == 26
    assert pool_size(10_000) == 64
