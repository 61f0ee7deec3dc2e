"""Open-loop sender: the i-th request is due at ``t0 + i / rate``, whatever the replies do.

A closed-loop load generator (send, wait for the answer, send again) slows down exactly when
the system under test does, and hides its latency. Here the clock alone decides when each
send starts; sends run on a small thread pool so one slow HTTP call never delays the next.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Submit = Callable[[Callable[[], None]], object]

# A send (one HTTP POST) is assumed to take at most this long when sizing the pool.
ASSUMED_MAX_SEND_SECONDS = 1.0
MAX_POOL_SIZE = 64


def pool_size(rate: float, send_seconds: float = ASSUMED_MAX_SEND_SECONDS) -> int:
    """Threads needed so ``rate`` sends per second, each taking ``send_seconds``, never queue."""
    return max(4, min(MAX_POOL_SIZE, math.ceil(rate * send_seconds) + 1))


def schedule(rate: float, count: int) -> list[float]:
    """Offsets (seconds after start) at which each of ``count`` sends is due."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    return [i / rate for i in range(count)]


@dataclass
class SendRecord:
    """When send ``index`` was due, when it started, and how it ended (offsets from start)."""

    index: int
    due: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    @property
    def lag(self) -> float | None:
        return None if self.started is None else self.started - self.due

    @property
    def ok(self) -> bool:
        return self.finished is not None and self.error is None


@dataclass
class OpenLoopSender:
    """Calls ``send(i)`` for ``i`` in ``range(count)`` at ``start + i / rate``.

    ``clock``, ``sleep`` and ``submit`` are injectable so tests can drive it with a fake clock;
    by default sends run on a thread pool of :func:`pool_size` threads.
    """

    rate: float
    count: int
    send: Callable[[int], None]
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep
    submit: Submit | None = None
    records: list[SendRecord] = field(default_factory=list)
    start: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        """Ask :meth:`run` to stop before the next send (Ctrl-C, or a fatal error)."""
        self._stop.set()

    def run(self) -> list[SendRecord]:
        """Send everything on schedule; return when every send has finished."""
        pool: ThreadPoolExecutor | None = None
        submit = self.submit
        if submit is None:
            pool = ThreadPoolExecutor(max_workers=pool_size(self.rate), thread_name_prefix="bench-send")
            submit = pool.submit
        futures: list[object] = []
        self.start = self.clock()
        try:
            for index, due in enumerate(schedule(self.rate, self.count)):
                if self._stop.is_set():
                    break
                self._wait_until(self.start + due)
                record = SendRecord(index, due)
                with self._lock:
                    self.records.append(record)
                futures.append(submit(self._task(record)))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        for future in futures:
            if isinstance(future, Future):
                future.exception()
        return self.records

    def _wait_until(self, target: float) -> None:
        while not self._stop.is_set():
            remaining = target - self.clock()
            if remaining <= 0:
                return
            # Sleep in short slices so stop() is honoured promptly.
            self.sleep(min(remaining, 0.2))

    def _task(self, record: SendRecord) -> Callable[[], None]:
        def task() -> None:
            record.started = self.clock() - self.start
            try:
                self.send(record.index)
            except Exception as err:
                record.error = f"{type(err).__name__}: {err}"
            record.finished = self.clock() - self.start

        return task

    # -- figures ------------------------------------------------------------------------------
    def sent_ok(self) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.ok)

    def errors(self) -> list[str]:
        with self._lock:
            return [r.error for r in self.records if r.error]

    def achieved_rate(self) -> float | None:
        """Sends started per second over the sending window (one period per send)."""
        with self._lock:
            started = [r.started for r in self.records if r.started is not None]
        if not started:
            return None
        window = max(started) - min(started) + 1 / self.rate
        return len(started) / window

    def max_lag(self) -> float | None:
        with self._lock:
            lags = [r.lag for r in self.records if r.lag is not None]
        return max(lags) if lags else None
