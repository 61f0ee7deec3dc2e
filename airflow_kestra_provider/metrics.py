"""The provider's metrics: names under ``kestra.``, sent through Airflow's own Stats.

Airflow sends them where its ``[metrics]`` section says (StatsD, DogStatsD, OpenTelemetry), with
its prefix, allow and block lists; there is nothing of ours to configure. The scheduler and its
executor use the Stats module Airflow initializes in those processes; an ``airflow kestra
worker`` process calls :func:`initialize_stats` first, as Airflow's triggerer does.

A metric about one worker or one queue is sent twice (:func:`emit`): its base name with a tag
(``worker_name`` or ``queue``) for backends with tags, and the base name with the entity
appended (``kestra.worker.running.<worker_name>``) for plain StatsD, as Airflow's legacy names
carry their dag and task ids. docs/metrics.md describes every metric.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from airflow.observability import stats

if TYPE_CHECKING:
    from airflow_kestra_provider.queue.claims import QueueSample

# -- the names (docs/metrics.md) -------------------------------------------------------------------
WORKER_POLLS = "kestra.worker.polls"
WORKER_EMPTY_POLLS = "kestra.worker.empty_polls"
WORKER_POLL_ERRORS = "kestra.worker.poll_errors"
WORKER_CLAIMS = "kestra.worker.claims"
WORKER_BATCH_SIZE = "kestra.worker.batch_size"
WORKER_POLL_DURATION = "kestra.worker.poll_duration"
WORKER_CLAIM_TO_START = "kestra.worker.claim_to_start"
WORKER_RUNNING = "kestra.worker.running"
WORKER_FREE_SLOTS = "kestra.worker.free_slots"

REAPER_DEAD_WORKERS = "kestra.reaper.dead_workers"
REAPER_REQUEUED = "kestra.reaper.requeued"
REAPER_FAILED = "kestra.reaper.failed"

QUEUE_DEPTH = "kestra.queue.depth"
QUEUE_OLDEST_AGE = "kestra.queue.oldest_age"
QUEUE_UNSERVED = "kestra.queue.unserved"

EXECUTOR_UNCLAIMED = "kestra.executor.unclaimed"
EXECUTOR_CLAIMED = "kestra.executor.claimed"

SCHEDULER_LOOP_DURATION = "kestra.scheduler.loop_duration"
SCHEDULER_BUSY_LOOPS = "kestra.scheduler.busy_loops"
SCHEDULER_RUNS_CREATED = "kestra.scheduler.runs_created"

WORKER_TAG = "worker_name"
QUEUE_TAG = "queue"

Kind = Literal["counter", "gauge", "timer"]
COUNTER: Kind = "counter"
GAUGE: Kind = "gauge"
TIMER: Kind = "timer"  # values in seconds; backends receive milliseconds, as from Airflow's timers


def initialize_stats() -> None:
    """Point Stats at the backend ``[metrics]`` configures, in a process Airflow does not
    initialize (``airflow kestra worker``), and in ``airflow kestra triggerer`` as the stock
    triggerer does at its start."""
    from airflow.configuration import conf
    from airflow.observability.metrics import stats_utils

    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )


def entity_name(stat: str, entity: str) -> str:
    """``stat`` with one worker's or queue's name appended, for StatsD without tags: characters
    StatsD names cannot hold become ``_``, and dots ``__`` (a dot would add a level to the name),
    as in Airflow's legacy names."""
    return f"{stat}.{stats.normalize_name_for_stats(entity.replace('.', '__'), log_warning=False)}"


def _send(kind: Kind, stat: str, value: float, tags: dict[str, str] | None) -> None:
    if kind == COUNTER:
        stats.incr(stat, count=int(value), tags=tags)
    elif kind == GAUGE:
        stats.gauge(stat, value, tags=tags)
    else:
        stats.timing(stat, timedelta(seconds=value), tags=tags)


def emit(kind: Kind, stat: str, value: float, tag: str | None = None, entity: str | None = None) -> None:
    """Send one metric; with ``tag`` and ``entity`` (a worker's or queue's name) as ``stat`` tagged
    ``{tag: entity}`` and as :func:`entity_name` untagged."""
    if tag is None or entity is None:
        _send(kind, stat, value, None)
        return
    _send(kind, stat, value, {tag: entity})
    _send(kind, entity_name(stat, entity), value, None)


# -- workers ---------------------------------------------------------------------------------------
class WorkerMetrics:
    """The metrics of one worker, named ``worker_name`` in tags and names."""

    def __init__(self, worker_name: str) -> None:
        self.worker_name = worker_name

    def _emit(self, kind: Kind, stat: str, value: float) -> None:
        emit(kind, stat, value, WORKER_TAG, self.worker_name)

    def polled(self, duration: float, claimed: int) -> None:
        """One poll statement that returned ``claimed`` task instances after ``duration`` seconds."""
        self._emit(COUNTER, WORKER_POLLS, 1)
        if claimed:
            self._emit(COUNTER, WORKER_CLAIMS, claimed)
            self._emit(GAUGE, WORKER_BATCH_SIZE, claimed)
        else:
            self._emit(COUNTER, WORKER_EMPTY_POLLS, 1)
        self._emit(TIMER, WORKER_POLL_DURATION, duration)

    def poll_failed(self) -> None:
        """A poll statement that raised (the database is unreachable or refused it)."""
        self._emit(COUNTER, WORKER_POLL_ERRORS, 1)

    def started(self, claim_to_start: float) -> None:
        """A claimed task handed to its runner process, ``claim_to_start`` seconds after the claim
        statement returned."""
        self._emit(TIMER, WORKER_CLAIM_TO_START, claim_to_start)

    def slots(self, running: int, free: int) -> None:
        """At each worker heartbeat: task instances running on the worker and its free slots."""
        self._emit(GAUGE, WORKER_RUNNING, running)
        self._emit(GAUGE, WORKER_FREE_SLOTS, free)


# -- the reaper ------------------------------------------------------------------------------------
def reaped(dead: int, requeued: int, failed: int) -> None:
    """One reaping pass: workers declared dead, their claims released to other workers, and their
    running task instances failed."""
    for stat, count in ((REAPER_DEAD_WORKERS, dead), (REAPER_REQUEUED, requeued), (REAPER_FAILED, failed)):
        if count:
            emit(COUNTER, stat, count)


# -- queues and the executor -----------------------------------------------------------------------
def queue_sample(sample: QueueSample, gone: Iterable[str] = ()) -> None:
    """One sample of the queues and of a scheduler job's workloads; ``gone``: queues of the
    previous sample without waiting task instances now (their gauges go back to 0)."""
    unserved = 0
    for depth in sample.queues:
        emit(GAUGE, QUEUE_DEPTH, depth.waiting, QUEUE_TAG, depth.queue)
        emit(GAUGE, QUEUE_OLDEST_AGE, depth.oldest_age if depth.waiting else 0.0, QUEUE_TAG, depth.queue)
        if depth.waiting and not depth.served:
            unserved += 1
    for queue in gone:
        emit(GAUGE, QUEUE_DEPTH, 0, QUEUE_TAG, queue)
        emit(GAUGE, QUEUE_OLDEST_AGE, 0.0, QUEUE_TAG, queue)
    emit(GAUGE, QUEUE_UNSERVED, unserved)
    emit(GAUGE, EXECUTOR_UNCLAIMED, sample.job_unclaimed)
    emit(GAUGE, EXECUTOR_CLAIMED, sample.job_claimed)


# -- the scheduler ---------------------------------------------------------------------------------
def scheduler_loop(duration: float, busy: bool, runs_created: int) -> None:
    """One scheduler loop of ``duration`` seconds (its idle wait excluded)."""
    emit(TIMER, SCHEDULER_LOOP_DURATION, duration)
    if busy:
        emit(COUNTER, SCHEDULER_BUSY_LOOPS, 1)
    if runs_created:
        emit(COUNTER, SCHEDULER_RUNS_CREATED, runs_created)
