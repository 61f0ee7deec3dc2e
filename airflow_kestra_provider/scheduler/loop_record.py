"""The scheduler's loop durations per minute, kept in ``kestra_scheduler_loop`` for the UI page.

:class:`LoopRecord` collects each loop's duration in memory; every ``every`` seconds, and when a
minute ends, it hands back the figures of the minute (count, busy loops, total, p50, p99, max)
for the scheduler to store with one statement (:func:`~..queue.claims.record_scheduler_loops`).
A failed write is logged and dropped: the record is a view of the scheduler, never a reason for it
to stop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import LoopMinute

log = logging.getLogger(__name__)

WRITE_EVERY = 10.0  # seconds between writes of the minute so far
WARN_EVERY = 300.0  # seconds between warnings about failed writes


def _rank(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class LoopRecord:
    """Loop durations of one scheduler job, by minute of the wall clock."""

    def __init__(
        self,
        job_id: int,
        hostname: str,
        every: float = WRITE_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job_id = job_id
        self.hostname = hostname
        self.every = every
        self.clock = clock
        self.minute = self._minute_of(clock())
        self.durations: list[float] = []
        self.busy = 0
        self.written_at = clock()

    @staticmethod
    def _minute_of(now: float) -> float:
        return now // 60 * 60

    def figures(self) -> LoopMinute | None:
        """The minute's figures so far (None: no loop in it yet)."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return LoopMinute(
            job_id=self.job_id,
            hostname=self.hostname,
            minute=self.minute,
            loops=len(ordered),
            busy_loops=self.busy,
            seconds=sum(ordered),
            p50=_rank(ordered, 0.5),
            p99=_rank(ordered, 0.99),
            max=ordered[-1],
        )

    def add(self, duration: float, busy: bool) -> list[LoopMinute]:
        """Count one loop that ended now; return the figures due for writing: a minute that has
        ended, and the current one when ``every`` seconds have passed since the last write."""
        now = self.clock()
        due: list[LoopMinute] = []
        minute = self._minute_of(now)
        if minute != self.minute:
            ended = self.figures()
            if ended is not None:
                due.append(ended)
            self.minute, self.durations, self.busy = minute, [], 0
        self.durations.append(duration)
        self.busy += busy
        if due or now - self.written_at >= self.every:
            current = self.figures()
            if current is not None:
                due.append(current)
            self.written_at = now
        return due


class LoopRecordWriter:
    """Stores what a :class:`LoopRecord` hands back, on a session of its own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.warned_at: float | None = None

    def write(self, due: list[LoopMinute]) -> None:
        if not due:
            return
        try:
            with claims.session_scope() as session:
                for figures in due:
                    claims.record_scheduler_loops(session, figures)
        except Exception as err:  # the record must never stop the scheduler
            now = self.clock()
            if self.warned_at is None or now - self.warned_at >= WARN_EVERY:
                self.warned_at = now
                log.warning(
                    "Kestra scheduler: could not store loop durations for the UI page (%s: %s); "
                    "has `airflow db migrate` run since the provider was upgraded?",
                    type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "",
                )
