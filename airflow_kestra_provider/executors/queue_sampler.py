"""The executor's view of the queues, sampled at most every ``[scheduler] pool_metrics_interval``.

Two statements (:func:`~airflow_kestra_provider.queue.claims.sample_queues`) per sample give, per
queue, the task instances waiting for a worker and whether a live worker serves it, and this
scheduler job's unclaimed and claimed workloads. Each sample is sent as the ``kestra.queue.*``
and ``kestra.executor.*`` gauges, and a queue whose task instances wait with no live worker to
claim them is logged as a warning (at most once a minute per queue). A failing sample is logged
once and never breaks the executor heartbeat; the last good sample stays current.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_kestra_provider import metrics
from airflow_kestra_provider.worker.failures import FailureLog

if TYPE_CHECKING:
    from airflow_kestra_provider.queue.claims import QueueSample

log = logging.getLogger(__name__)

UNSERVED_WARNING_INTERVAL = 60.0  # seconds between two warnings about the same queue

SampleFunction = Callable[[int | None], "QueueSample"]


def database_sample(worker_timeout: float) -> SampleFunction:
    """The sample function reading the database (in its own transaction)."""

    def sample(job_id: int | None) -> QueueSample:
        from airflow_kestra_provider.queue import claims

        with claims.session_scope() as session:
            return claims.sample_queues(session, job_id, worker_timeout)

    return sample


class QueueSampler:
    """Samples the queues for one scheduler job's executor: :meth:`tick` each heartbeat."""

    def __init__(
        self,
        interval: float,
        sample: SampleFunction,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._sample = sample
        self.last: QueueSample | None = None  # the last sample that worked
        self._sampled_at = float("-inf")
        self._reported: set[str] = set()  # queues with gauges sent by the last sample
        self._warned_at: dict[str, float] = {}  # queue -> when it was last warned about
        self._failures = FailureLog(log, "sampling the kestra queues for metrics", quiet=float("inf"))

    def tick(self, job_id: int | None) -> QueueSample | None:
        """Sample when ``interval`` has passed since the last attempt; the last good sample."""
        now = self.clock()
        if now - self._sampled_at < self.interval:
            return self.last
        self._sampled_at = now
        try:
            sample = self._sample(job_id)
        except Exception:
            self._failures.failed(self.interval)
            return self.last
        self._failures.succeeded()
        self.last = sample
        queues = {depth.queue for depth in sample.queues}
        metrics.queue_sample(sample, gone=sorted(self._reported - queues))
        self._reported = queues
        self._warn_unserved(sample, now)
        return sample

    def _warn_unserved(self, sample: QueueSample, now: float) -> None:
        unserved = set()
        for depth in sample.queues:
            if not depth.waiting or depth.served:
                continue
            unserved.add(depth.queue)
            if now - self._warned_at.get(depth.queue, float("-inf")) < UNSERVED_WARNING_INTERVAL:
                continue
            self._warned_at[depth.queue] = now
            log.warning(
                "%d task instance(s) wait in queue %r (the oldest for %.0fs) and no live "
                "`airflow kestra worker` serves it: `airflow kestra worker --queues %s` starts one",
                depth.waiting,
                depth.queue,
                depth.oldest_age,
                depth.queue,
            )
        for queue in set(self._warned_at) - unserved:  # served again: warn at once next time
            del self._warned_at[queue]
