"""Every SQL statement of the KestraExecutor's queue, in one place (PostgreSQL).

Two tables of our own sit beside Airflow's, ``kestra_worker`` and ``kestra_workload``
(defined in :mod:`airflow_kestra_provider.models.tables`, created by ``airflow db migrate``).
The executor inserts one ``kestra_workload`` row each time the scheduler hands it a task
instance (:func:`enqueue`, one statement per heartbeat); workers claim those rows.

The hot path is :func:`claim`: ONE statement per poll that locks up to ``limit`` pending
workloads (``FOR UPDATE SKIP LOCKED``), marks them claimed by the worker and returns them. A
workload whose task instance is no longer QUEUED with the same try (cleared, marked through the
API, revoked) is finished as ``dropped`` by the same statement instead of being returned.

Results (``kestra_workload.result``) and what the executor makes of them:

* ``success`` / ``failed``: the task process exited 0 / otherwise, or its worker was lost while
  it ran (``failed``); an executor event, unless the same try was queued again meanwhile;
* ``not_started``: the Execution API refused the start (another start won, or the task instance
  left QUEUED); ``dropped``: it left QUEUED before any worker claimed it; ``revoked``: the
  scheduler revoked it; ``lost``: its worker died and the task instance had already ended. None
  of these is an event: the task instance's state was decided elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from airflow_kestra_provider.models.tables import LIVE_WORKER_STATES
from airflow_kestra_provider.scheduler.notify import CHANNEL as SCHEDULER_CHANNEL
from airflow_kestra_provider.scheduler.notify import WORKLOADS_FINISHED, WORKLOADS_SUCCEEDED

NOTIFY_CHANNEL = "kestra_task_queued"
ENDED_RESULTS = frozenset({"success", "failed"})
# SQL list of the states of a worker that is still there (heartbeats, may be reaped)
_LIVE = "(" + ", ".join(f"'{state}'" for state in LIVE_WORKER_STATES) + ")"

_ENQUEUE_SQL = text(
    """
    INSERT INTO kestra_workload
        (id, ti_id, try_number, dag_id, task_id, run_id, map_index, queue, priority_weight, job_id,
         workload, created_at)
    SELECT r.id, r.ti_id, r.try_number, r.dag_id, r.task_id, r.run_id, r.map_index, r.queue,
           r.priority_weight, :job_id, r.workload, now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:ti_ids AS uuid[]), CAST(:tries AS integer[]),
                CAST(:dag_ids AS varchar[]), CAST(:task_ids AS varchar[]), CAST(:run_ids AS varchar[]),
                CAST(:map_indexes AS integer[]), CAST(:queues AS varchar[]),
                CAST(:priorities AS integer[]), CAST(:workloads AS text[]))
         AS r(id, ti_id, try_number, dag_id, task_id, run_id, map_index, queue, priority_weight, workload)
    ON CONFLICT (id) DO NOTHING
    """
)

# The worker must still be registered as running: a worker declared dead claims nothing.
# The pending rows are read in claim order through the kestra_workload_pending index (its order is
# the ORDER BY's, so a poll reads :limit rows however deep the queue is), and only those rows' task
# instances are looked up, by primary key: a row whose task instance left queued (or moved to
# another try) is claimed as dropped, not returned.
_CLAIM_SQL = text(
    """
    WITH candidate AS (
        SELECT w.id, w.ctid AS row_at, w.ti_id, w.try_number
        FROM kestra_workload AS w
        WHERE w.claimed_at IS NULL AND w.finished_at IS NULL
          AND (:all_queues OR w.queue = ANY(:queues))
          AND EXISTS (SELECT 1 FROM kestra_worker WHERE id = :worker_id AND state = 'running')
        ORDER BY w.priority_weight DESC, w.created_at
        LIMIT :limit
        FOR UPDATE OF w SKIP LOCKED
    ), checked AS (
        SELECT c.id, c.row_at, coalesce(ti.try_number = c.try_number AND ti.state = 'queued', false) AS runnable
        FROM candidate AS c
        -- OFFSET 0 keeps this a lookup per candidate (by primary key), never a scan of task_instance
        LEFT JOIN LATERAL (
            SELECT t.try_number, t.state FROM task_instance AS t WHERE t.id = c.ti_id OFFSET 0
        ) AS ti ON true
    ), claimed AS (
        UPDATE kestra_workload AS w
        SET worker_id = :worker_id, claimed_at = now(),
            finished_at = CASE WHEN c.runnable THEN NULL ELSE now() END,
            result = CASE WHEN c.runnable THEN NULL ELSE 'dropped' END
        FROM checked AS c
        -- the candidates' own row versions (locked above): a TID lookup each, never a scan
        WHERE w.ctid = ANY (ARRAY(SELECT row_at FROM checked)) AND w.id = c.id
        RETURNING w.id, w.ti_id, w.try_number, w.workload, w.priority_weight, w.created_at, c.runnable
    )
    SELECT id, ti_id, try_number, workload FROM claimed WHERE runnable
    ORDER BY priority_weight DESC, created_at
    """
)

# Only the worker that owns a claim records its result.
# The same statement notifies the schedulers (their LISTEN channel) when it finished any row, with
# a payload that says whether every one succeeded (see notify.WORKLOADS_SUCCEEDED): a result other
# than success may need the scheduler's executor events to fail a task instance.
_FINISH_SQL = text(
    f"""
    WITH finished AS (
        UPDATE kestra_workload AS w
        SET result = r.result, exit_code = r.exit_code, detail = r.detail, finished_at = now()
        FROM unnest(CAST(:ids AS uuid[]), CAST(:results AS varchar[]), CAST(:exit_codes AS integer[]),
                    CAST(:details AS text[]))
             AS r(id, result, exit_code, detail)
        WHERE w.id = r.id AND w.worker_id = :worker_id AND w.finished_at IS NULL
        RETURNING w.result
    )
    SELECT pg_notify(
        '{SCHEDULER_CHANNEL}',
        CASE WHEN bool_and(result = 'success') THEN '{WORKLOADS_SUCCEEDED}' ELSE '{WORKLOADS_FINISHED}' END
    )
    FROM finished HAVING count(*) > 0
    """
)

# Claims handed back unstarted (the worker is stopping): pending again for any worker.
_RELEASE_SQL = text(
    """
    UPDATE kestra_workload SET worker_id = NULL, claimed_at = NULL
    WHERE id = ANY(CAST(:ids AS uuid[])) AND worker_id = :worker_id AND finished_at IS NULL
    """
)

# Finished rows of this job, plus pending ones whose task instance left QUEUED unclaimed (their
# keys must leave the executor's running set even when no worker serves their queue).
_REPORT_SQL = text(
    """
    WITH dropped AS (
        UPDATE kestra_workload AS w
        SET result = 'dropped', finished_at = now(), reported_at = now()
        WHERE w.job_id = :job_id AND w.claimed_at IS NULL AND w.finished_at IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM task_instance AS ti
              WHERE ti.id = w.ti_id AND ti.try_number = w.try_number AND ti.state = 'queued'
          )
        RETURNING w.id, w.result, w.detail
    ), reported AS (
        UPDATE kestra_workload AS w
        SET reported_at = now()
        WHERE w.job_id = :job_id AND w.finished_at IS NOT NULL AND w.reported_at IS NULL
        RETURNING w.id, w.result, w.detail
    )
    SELECT id, result, detail FROM reported
    UNION ALL
    SELECT id, result, detail FROM dropped
    """
)

_ADOPT_SQL = text(
    """
    UPDATE kestra_workload SET job_id = :job_id
    WHERE ti_id = ANY(CAST(:ti_ids AS uuid[])) AND reported_at IS NULL
    RETURNING id, dag_id, task_id, run_id, map_index, try_number
    """
)

# Open or unreported rows whose scheduler job is gone (not running, or silent past Airflow's
# [scheduler] scheduler_health_check_threshold, the test stock adoption uses): this job takes
# them, and their task instances, over now, so their results are heard at once instead of after
# the stock orphan check ([scheduler] orphaned_tasks_check_interval, 300 s by default).
_ADOPT_ORPHANS_SQL = text(
    """
    WITH orphaned AS (
        SELECT w.id, w.ti_id, w.try_number
        FROM kestra_workload AS w
        JOIN job AS j ON j.id = w.job_id
        WHERE w.reported_at IS NULL AND w.job_id <> :job_id
          AND (j.state <> 'running' OR j.latest_heartbeat < now() - make_interval(secs => :threshold))
        FOR UPDATE OF w SKIP LOCKED
    ), tis AS (
        UPDATE task_instance AS ti SET queued_by_job_id = :job_id
        FROM orphaned AS o
        WHERE ti.id = o.ti_id AND ti.try_number = o.try_number AND ti.state IN ('queued', 'running')
        RETURNING ti.id
    )
    UPDATE kestra_workload AS w SET job_id = :job_id
    FROM orphaned AS o WHERE w.id = o.id
    RETURNING w.id, w.dag_id, w.task_id, w.run_id, w.map_index, w.try_number
    """
)

_REVOKE_SQL = text(
    """
    UPDATE kestra_workload
    SET result = 'revoked', finished_at = now(), reported_at = now()
    WHERE ti_id = CAST(:ti_id AS uuid) AND try_number = :try AND claimed_at IS NULL AND finished_at IS NULL
    """
)

_REGISTER_SQL = text(
    """
    INSERT INTO kestra_worker
        (id, name, hostname, pid, embedded, concurrency, queues, version, state, started_at, heartbeat_at)
    VALUES (:id, :name, :hostname, :pid, :embedded, :concurrency, CAST(:queues AS varchar[]), :version,
            'running', now(), now())
    """
)

# A worker's open claims move to its new id when it registers anew after it was declared dead;
# the ones the reaper released or finished meanwhile are not its own any more.
_TAKE_OVER_SQL = text(
    """
    UPDATE kestra_workload SET worker_id = :new_id
    WHERE worker_id = :old_id AND claimed_at IS NOT NULL AND finished_at IS NULL
    RETURNING id
    """
)

# Returns the state, which the fleet commands may have changed (maintenance, draining).
_HEARTBEAT_SQL = text(
    f"UPDATE kestra_worker SET heartbeat_at = now() WHERE id = :id AND state IN {_LIVE} RETURNING state"
)

_STOP_SQL = text("UPDATE kestra_worker SET state = 'stopped', heartbeat_at = now() WHERE id = :id")

# A worker whose heartbeat is older than the timeout is dead. Open claims of dead workers:
# * task instance still QUEUED with the same try: the task never started; the claim goes back to
#   pending for another worker (if the dead worker's start was under way, the Execution API lets
#   only one start win, and the loser reports not_started);
# * task instance RUNNING with that try and still heartbeating (its worker is frozen, its task
#   is not): left alone; the worker takes it over if it comes back, or the task ends by itself;
# * otherwise finished: ``failed`` if the task instance is still RUNNING (its task is gone, the
#   scheduler applies its retries), else ``lost`` (it ended on its own; nothing to report).
_REAP_SQL = text(
    f"""
    WITH dead AS (
        UPDATE kestra_worker SET state = 'dead'
        WHERE state IN {_LIVE} AND heartbeat_at < now() - make_interval(secs => :timeout)
        RETURNING id
    ), orphan AS (
        SELECT w.id,
               (ti.state = 'queued' AND ti.try_number = w.try_number) AS not_started,
               (ti.state = 'running' AND ti.try_number = w.try_number) AS running,
               (ti.last_heartbeat_at > now() - make_interval(secs => :timeout)) AS heartbeating
        FROM kestra_workload AS w
        LEFT JOIN task_instance AS ti ON ti.id = w.ti_id
        WHERE w.claimed_at IS NOT NULL AND w.finished_at IS NULL
          AND (w.worker_id IN (SELECT id FROM dead)
               OR w.worker_id IN (SELECT id FROM kestra_worker WHERE state = 'dead'))
        FOR UPDATE OF w SKIP LOCKED
    ), released AS (
        UPDATE kestra_workload AS w SET worker_id = NULL, claimed_at = NULL
        FROM orphan AS o WHERE w.id = o.id AND o.not_started
        RETURNING w.id
    ), ended AS (
        UPDATE kestra_workload AS w
        SET result = CASE WHEN o.running THEN 'failed' ELSE 'lost' END,
            finished_at = now(), detail = 'worker ' || w.worker_id || ' lost'
        FROM orphan AS o
        WHERE w.id = o.id AND NOT coalesce(o.not_started, false)
          AND NOT (coalesce(o.running, false) AND coalesce(o.heartbeating, false))
        RETURNING w.id, w.result
    )
    SELECT (SELECT count(*) FROM dead), (SELECT count(*) FROM released),
           (SELECT count(*) FROM ended WHERE result = 'failed')
    """
)

_PURGE_SQL = text(
    f"""
    WITH workloads AS (
        DELETE FROM kestra_workload WHERE reported_at < now() - make_interval(secs => :retention)
        RETURNING 1
    )
    DELETE FROM kestra_worker
    WHERE state NOT IN {_LIVE} AND heartbeat_at < now() - make_interval(secs => :retention)
    """
)

_NOTIFY_SQL = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")


@dataclass(frozen=True)
class QueuedWorkload:
    """One workload as the executor writes it."""

    id: str
    ti_id: str
    try_number: int
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    queue: str
    priority_weight: int
    workload: str  # ExecuteTask JSON


@dataclass(frozen=True)
class ClaimedWorkload:
    """One claimed workload: its row id and the ExecuteTask JSON the scheduler built."""

    id: str
    ti_id: str
    try_number: int
    workload: str


@dataclass(frozen=True)
class TaskResult:
    """How one claimed workload ended on its worker."""

    workload_id: str
    result: str  # success | failed | not_started, or release (hand the claim back unstarted)
    exit_code: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ReportedResult:
    """A finished workload not yet reported to the scheduler job that owns it."""

    workload_id: str
    result: str
    detail: str | None


_factory_lock = threading.Lock()
_factory: sessionmaker[Session] | None = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session of our own on Airflow's engine, committed on success.

    Never Airflow's thread-scoped ``settings.Session``: the executor is called inside the
    scheduler's session, and committing or closing that one would detach the scheduler's objects.
    """
    global _factory
    with _factory_lock:
        if _factory is None:
            from airflow import settings

            if settings.engine is None:
                raise RuntimeError("Airflow's ORM is not configured")
            _factory = sessionmaker(bind=settings.engine, expire_on_commit=False)
        factory = _factory
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_TABLES_PRESENT_SQL = text(
    "SELECT to_regclass('kestra_worker') IS NOT NULL AND to_regclass('kestra_workload') IS NOT NULL"
    " AND to_regclass('kestra_scheduler_loop') IS NOT NULL"
)


def tables_present(session: Session) -> bool:
    """Whether ``airflow db migrate`` has created our tables (KestraDBManager)."""
    return bool(session.execute(_TABLES_PRESENT_SQL).scalar())


def enqueue(session: Session, job_id: int | None, workloads: Sequence[QueuedWorkload]) -> None:
    """Write the workloads one executor heartbeat was handed: one statement for all of them."""
    if not workloads:
        return
    session.execute(
        _ENQUEUE_SQL,
        {
            "job_id": job_id,
            "ids": [w.id for w in workloads],
            "ti_ids": [w.ti_id for w in workloads],
            "tries": [w.try_number for w in workloads],
            "dag_ids": [w.dag_id for w in workloads],
            "task_ids": [w.task_id for w in workloads],
            "run_ids": [w.run_id for w in workloads],
            "map_indexes": [w.map_index for w in workloads],
            "queues": [w.queue for w in workloads],
            "priorities": [w.priority_weight for w in workloads],
            "workloads": [w.workload for w in workloads],
        },
    )


def _claim_params(worker_id: str, limit: int, queues: Iterable[str]) -> dict[str, Any]:
    queue_list = sorted(queues)
    return {
        "worker_id": worker_id,
        "limit": limit,
        "all_queues": not queue_list,
        "queues": queue_list or [""],
    }


def _claimed(rows: Iterable[Any]) -> list[ClaimedWorkload]:
    return [ClaimedWorkload(str(r.id), str(r.ti_id), r.try_number, r.workload) for r in rows]


def claim(session: Session, *, worker_id: str, limit: int, queues: Iterable[str]) -> list[ClaimedWorkload]:
    """Claim up to ``limit`` pending workloads for ``worker_id`` in one statement (in the
    session's transaction: claimed when it commits)."""
    return _claimed(session.execute(_CLAIM_SQL, _claim_params(worker_id, limit, queues)).all())


class PollConnection:
    """The connection a worker's poll loop claims on: taken from Airflow's engine once and kept,
    in autocommit, so a poll is one round trip to PostgreSQL (the statement commits by itself)
    instead of four (pool pre-ping, BEGIN, the statement, COMMIT). A poll that fails drops the
    connection; the next poll takes a fresh one (pre-pinged by the pool)."""

    def __init__(self, engine: Any = None) -> None:
        self._engine = engine
        self._connection: Any = None

    def _connect(self) -> Any:
        if self._connection is None:
            engine = self._engine
            if engine is None:
                from airflow import settings

                engine = settings.engine
            if engine is None:
                raise RuntimeError("Airflow's ORM is not configured")
            self._connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def claim(self, *, worker_id: str, limit: int, queues: Iterable[str]) -> list[ClaimedWorkload]:
        """Claim up to ``limit`` pending workloads for ``worker_id``: one statement, committed."""
        connection = self._connect()
        try:
            return _claimed(connection.execute(_CLAIM_SQL, _claim_params(worker_id, limit, queues)).all())
        except BaseException:
            self.close(invalidate=True)
            raise

    def close(self, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with suppress(Exception):
            if invalidate:
                connection.invalidate()
            connection.close()


def finish(session: Session, worker_id: str, results: Sequence[TaskResult]) -> None:
    """Record how a batch of ``worker_id``'s claims ended: one statement for the whole batch.
    Claims the worker no longer owns (it was declared dead meanwhile) are left as they are."""
    if not results:
        return
    session.execute(
        _FINISH_SQL,
        {
            "worker_id": worker_id,
            "ids": [r.workload_id for r in results],
            "results": [r.result for r in results],
            "exit_codes": [r.exit_code for r in results],
            "details": [r.detail for r in results],
        },
    )


def release(session: Session, worker_id: str, workload_ids: Sequence[str]) -> None:
    """Hand ``worker_id``'s unstarted claims back to the queue."""
    if workload_ids:
        session.execute(_RELEASE_SQL, {"worker_id": worker_id, "ids": list(workload_ids)})


def report_finished(session: Session, job_id: int | None) -> list[ReportedResult]:
    """Take the finished, unreported workloads of scheduler job ``job_id``."""
    rows = session.execute(_REPORT_SQL, {"job_id": job_id}).all()
    return [ReportedResult(str(r.id), r.result, r.detail) for r in rows]


def adopt(
    session: Session, job_id: int | None, ti_ids: Sequence[str]
) -> list[tuple[str, tuple[str, str, str, int, int]]]:
    """Route the results of ``ti_ids``' open workloads to scheduler job ``job_id`` (it adopted
    them); returns ``(workload id, (dag_id, task_id, run_id, map_index, try_number))`` of each."""
    if not ti_ids:
        return []
    rows = session.execute(_ADOPT_SQL, {"job_id": job_id, "ti_ids": list(ti_ids)}).all()
    return [(str(r.id), (r.dag_id, r.task_id, r.run_id, r.map_index, r.try_number)) for r in rows]


def adopt_orphans(
    session: Session, job_id: int, threshold: float
) -> list[tuple[str, tuple[str, str, str, int, int]]]:
    """Take over the rows (and task instances) of scheduler jobs that are gone; same return as
    :func:`adopt`."""
    rows = session.execute(_ADOPT_ORPHANS_SQL, {"job_id": job_id, "threshold": threshold}).all()
    return [(str(r.id), (r.dag_id, r.task_id, r.run_id, r.map_index, r.try_number)) for r in rows]


def revoke(session: Session, ti_id: str, try_number: int) -> None:
    """Withdraw the unclaimed workloads of one try (the scheduler revoked it)."""
    session.execute(_REVOKE_SQL, {"ti_id": ti_id, "try": try_number})


def register_worker(
    session: Session,
    *,
    worker_id: str,
    name: str,
    hostname: str,
    pid: int,
    embedded: bool,
    concurrency: int,
    queues: Iterable[str],
    version: str,
) -> None:
    """Register a worker as ``running``; ``queues`` empty: it serves every queue."""
    session.execute(
        _REGISTER_SQL,
        {
            "id": worker_id,
            "name": name,
            "hostname": hostname,
            "pid": pid,
            "embedded": embedded,
            "concurrency": concurrency,
            "queues": sorted(queues) or None,
            "version": version,
        },
    )


def take_over(session: Session, old_id: str, new_id: str) -> set[str]:
    """Move ``old_id``'s open claims to ``new_id``; returns the workload ids it still owns."""
    return {str(r.id) for r in session.execute(_TAKE_OVER_SQL, {"old_id": old_id, "new_id": new_id})}


def heartbeat(session: Session, worker_id: str) -> str | None:
    """Refresh ``worker_id``'s heartbeat; returns its state (running, maintenance or draining),
    None when it was declared dead (or stopped) meanwhile."""
    state = session.execute(_HEARTBEAT_SQL, {"id": worker_id}).scalar()
    return str(state) if state is not None else None


def stop_worker(session: Session, worker_id: str) -> None:
    session.execute(_STOP_SQL, {"id": worker_id})


def reap_dead_workers(session: Session, timeout: float) -> tuple[int, int, int]:
    """Declare workers silent for ``timeout`` s dead and settle their open claims; returns
    (workers declared dead, claims released to other workers, claims failed)."""
    row = session.execute(_REAP_SQL, {"timeout": timeout}).one()
    return int(row[0]), int(row[1]), int(row[2])


def purge(session: Session, retention: float) -> None:
    """Delete workloads reported, and workers stopped, more than ``retention`` seconds ago."""
    session.execute(_PURGE_SQL, {"retention": retention})


def notify(session: Session) -> None:
    """Wake every LISTENing poller (delivered when the session commits)."""
    session.execute(_NOTIFY_SQL)


# -- the fleet: workers by name, their states, and queues nobody serves (not the hot path) ----------
# Registrations live now or gone less than :window seconds ago, newest first within a name, with
# their open claims (the kestra_workload_open index).
_WORKERS_SQL = text(
    f"""
    SELECT w.id, w.name, w.hostname, w.pid, w.embedded, w.concurrency, w.queues, w.version, w.state,
           w.started_at, w.heartbeat_at,
           extract(epoch FROM now() - w.heartbeat_at) AS heartbeat_age,
           (SELECT count(*) FROM kestra_workload AS l
            WHERE l.worker_id = w.id AND l.claimed_at IS NOT NULL AND l.finished_at IS NULL) AS running
    FROM kestra_worker AS w
    WHERE w.state IN {_LIVE} OR w.heartbeat_at > now() - make_interval(secs => :window)
    ORDER BY w.name, w.started_at DESC
    """
)

_WORKER_NAMED_SQL = text(
    """
    SELECT id, name, hostname, pid, embedded, state, extract(epoch FROM now() - heartbeat_at) AS heartbeat_age
    FROM kestra_worker WHERE name = :name
    ORDER BY started_at DESC LIMIT 1
    """
)

# The newest registration of a worker named :name, if it is in one of :from_states.
_SET_STATE_SQL = text(
    """
    UPDATE kestra_worker SET state = :state
    WHERE id = (SELECT id FROM kestra_worker WHERE name = :name ORDER BY started_at DESC LIMIT 1)
      AND state = ANY(CAST(:from_states AS varchar[]))
    RETURNING id
    """
)

# Per queue: workloads waiting for a worker (all scheduler jobs), and whether a worker that
# claims (running, heartbeat fresher than :timeout) serves the queue (NULL queues: every one).
_QUEUE_DEPTHS_SQL = text(
    """
    WITH waiting AS (
        SELECT queue, count(*) AS waiting, extract(epoch FROM now() - min(created_at)) AS oldest_age
        FROM kestra_workload WHERE claimed_at IS NULL AND finished_at IS NULL
        GROUP BY queue
    )
    SELECT q.queue, q.waiting, q.oldest_age,
           EXISTS (
               SELECT 1 FROM kestra_worker AS k
               WHERE k.state = 'running' AND k.heartbeat_at > now() - make_interval(secs => :timeout)
                 AND (k.queues IS NULL OR q.queue = ANY(k.queues))
           ) AS served
    FROM waiting AS q
    ORDER BY q.queue
    """
)

_JOB_WORKLOADS_SQL = text(
    """
    SELECT count(*) FILTER (WHERE claimed_at IS NULL) AS unclaimed,
           count(*) FILTER (WHERE claimed_at IS NOT NULL) AS claimed
    FROM kestra_workload WHERE job_id = :job_id AND finished_at IS NULL
    """
)


@dataclass(frozen=True)
class WorkerRow:
    """One registration of a worker, as the fleet commands and the UI show it."""

    id: str
    name: str
    hostname: str
    pid: int
    embedded: bool
    concurrency: int
    queues: tuple[str, ...] | None  # None: every queue
    version: str | None
    state: str
    started_at: Any
    heartbeat_at: Any
    heartbeat_age: float
    running: int


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    waiting: int  # pending workloads in this queue (all scheduler jobs)
    oldest_age: float  # seconds the oldest of them has waited
    served: bool  # a live worker (state running, fresh heartbeat) serves this queue


@dataclass(frozen=True)
class QueueSample:
    queues: list[QueueDepth]
    job_unclaimed: int  # this job's pending workloads
    job_claimed: int  # this job's claimed, unfinished workloads


def list_workers(session: Session, window: float = 600.0) -> list[WorkerRow]:
    """Workers live now or gone less than ``window`` seconds ago, by name, newest first."""
    return [
        WorkerRow(
            id=r.id,
            name=r.name,
            hostname=r.hostname,
            pid=r.pid,
            embedded=r.embedded,
            concurrency=r.concurrency,
            queues=tuple(r.queues) if r.queues is not None else None,
            version=r.version,
            state=r.state,
            started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            heartbeat_age=float(r.heartbeat_age),
            running=int(r.running),
        )
        for r in session.execute(_WORKERS_SQL, {"window": window})
    ]


def worker_named(session: Session, name: str) -> Any | None:
    """The newest registration of the worker ``name`` (id, hostname, pid, embedded, state,
    heartbeat_age), or None."""
    return session.execute(_WORKER_NAMED_SQL, {"name": name}).one_or_none()


def set_worker_state(session: Session, name: str, state: str, from_states: Sequence[str]) -> str | None:
    """Move the newest registration of worker ``name`` to ``state`` if it is in one of
    ``from_states``; returns its id, or None when it was not."""
    row = session.execute(
        _SET_STATE_SQL, {"name": name, "state": state, "from_states": list(from_states)}
    ).one_or_none()
    return str(row.id) if row is not None else None


def queue_depths(session: Session, worker_timeout: float) -> list[QueueDepth]:
    """Per queue with waiting workloads: how many, the oldest's age, and whether a live worker
    serves it (one statement)."""
    return [
        QueueDepth(r.queue, int(r.waiting), float(r.oldest_age), bool(r.served))
        for r in session.execute(_QUEUE_DEPTHS_SQL, {"timeout": worker_timeout})
    ]


def sample_queues(session: Session, job_id: int | None, worker_timeout: float) -> QueueSample:
    """Queue depths and served flags, and ``job_id``'s open workloads (two statements)."""
    depths = queue_depths(session, worker_timeout)
    job = session.execute(_JOB_WORKLOADS_SQL, {"job_id": job_id}).one()
    return QueueSample(depths, int(job.unclaimed or 0), int(job.claimed or 0))


# -- the UI page (``/kestra/api/v1``; not the hot path) ---------------------------------------------
# Minute buckets over the last :minutes minutes: t0 starts the oldest bucket, the newest is the
# current minute. The rows read are those created or ended since t0 and the open ones (the
# kestra_workload_created and kestra_workload_finished indexes): rows are kept an hour after
# they were reported, so the hour is complete.
_UI_RECENT = """
    bounds AS (
        SELECT date_trunc('minute', now()) - make_interval(mins => :minutes - 1) AS t0
    ), recent AS (
        SELECT w.dag_id, w.ti_id, w.try_number, w.created_at, w.claimed_at, w.finished_at, w.result,
               least(w.claimed_at, w.finished_at) AS left_at
        FROM kestra_workload AS w, bounds AS b
        WHERE w.created_at >= b.t0 OR w.finished_at >= b.t0 OR w.finished_at IS NULL
    ), buckets AS (
        SELECT generate_series(b.t0, date_trunc('minute', now()), interval '1 minute') AS minute
        FROM bounds AS b
    )
"""

# Per minute: queue depth at its end, claims and completions (success or failed) in it. A row
# waits from created_at until its claim or its end, whichever comes first; the depth is the
# running sum of arrivals minus departures, rows that arrived before t0 counted in the oldest
# bucket. A claim handed back (worker stopping, worker dead) waits again from its release but
# counts as waiting since created_at here.
_UI_QUEUE_HISTORY_SQL = text(
    f"""
    WITH {_UI_RECENT}, events AS (
        SELECT e.minute, e.kind
        FROM recent AS r CROSS JOIN bounds AS b CROSS JOIN LATERAL (VALUES
            (greatest(date_trunc('minute', r.created_at), b.t0), 'arrived'),
            (CASE WHEN r.left_at IS NOT NULL THEN greatest(date_trunc('minute', r.left_at), b.t0) END,
             'left'),
            (CASE WHEN r.claimed_at >= b.t0 THEN date_trunc('minute', r.claimed_at) END, 'claimed'),
            (CASE WHEN r.finished_at >= b.t0 AND r.result IN ('success', 'failed')
                  THEN date_trunc('minute', r.finished_at) END, 'completed')
        ) AS e(minute, kind)
        WHERE e.minute IS NOT NULL
    ), per_minute AS (
        SELECT minute,
               count(*) FILTER (WHERE kind = 'arrived') - count(*) FILTER (WHERE kind = 'left') AS delta,
               count(*) FILTER (WHERE kind = 'claimed') AS claims,
               count(*) FILTER (WHERE kind = 'completed') AS completions
        FROM events GROUP BY minute
    )
    SELECT extract(epoch FROM k.minute) AS minute,
           sum(coalesce(p.delta, 0)) OVER (ORDER BY k.minute) AS depth,
           coalesce(p.claims, 0) AS claims, coalesce(p.completions, 0) AS completions
    FROM buckets AS k LEFT JOIN per_minute AS p ON p.minute = k.minute
    ORDER BY k.minute
    """
)

# Percentiles (p50, p90, p99) of run latency (queued to end: created_at to finished_at of a try
# that ended success or failed) and of queued to claimed (created_at to claimed_at of a claim
# that went on to start), over the last 5 minutes and the whole window, and per minute; for one
# DAG when :dag_id is given. Also the DAGs of the window with their ended tries (for the DAG
# picker, never filtered) and the running scheduler jobs from Airflow's job table (its
# job_type_heart index).
_PCTS = "ARRAY[0.5, 0.9, 0.99]"


def _summary_of(durations: str) -> str:
    """SQL of one JSON summary of a CTE of ``(at, seconds)`` rows: the count and percentiles over
    the last 5 minutes (by ``at``) and over the whole window."""
    recent = "FILTER (WHERE at > now() - interval '5 minutes')"
    return f"""(SELECT json_build_object(
            'n_5m', count(*) {recent},
            'pcts_5m', percentile_cont({_PCTS}) WITHIN GROUP (ORDER BY seconds) {recent},
            'n_window', count(*),
            'pcts_window', percentile_cont({_PCTS}) WITHIN GROUP (ORDER BY seconds))
         FROM {durations})"""


# The scheduler loops of the running scheduler jobs (``kestra_scheduler_loop``, written by
# ``airflow kestra scheduler``; a stock scheduler has none): per job over the last 5 minutes, and
# per minute of the window over all jobs (the mean, and the worst p99 and longest loop of a job).
_LOOP_FIGURES = """(SELECT json_build_object(
        'jobs', (SELECT coalesce(json_agg(per_job), '[]'::json) FROM (
                    SELECT l.job_id, count(*) AS minutes, sum(l.loops) AS loops, sum(l.busy_loops) AS busy_loops,
                           sum(l.seconds) / nullif(sum(l.loops), 0) AS mean,
                           max(l.p99) AS p99, max(l.max) AS max
                    FROM kestra_scheduler_loop AS l
                    JOIN job AS j ON j.id = l.job_id AND j.state = 'running'
                    WHERE l.minute >= date_trunc('minute', now()) - interval '4 minutes'
                    GROUP BY l.job_id) AS per_job),
        'series', (SELECT json_agg(json_build_object(
                        'minute', extract(epoch FROM k.minute), 'loops', coalesce(m.loops, 0),
                        'mean', m.mean, 'p99', m.p99, 'max', m.max) ORDER BY k.minute)
                   FROM buckets AS k LEFT JOIN (
                        SELECT l.minute, sum(l.loops) AS loops,
                               sum(l.seconds) / nullif(sum(l.loops), 0) AS mean,
                               max(l.p99) AS p99, max(l.max) AS max
                        FROM kestra_scheduler_loop AS l, bounds AS b
                        WHERE l.minute >= b.t0 GROUP BY l.minute) AS m ON m.minute = k.minute)))"""

_UI_LATENCY_SQL = text(
    f"""
    WITH {_UI_RECENT}, picked AS (
        SELECT * FROM recent
        WHERE CAST(:dag_id AS varchar) IS NULL OR dag_id = CAST(:dag_id AS varchar)
    ), ended AS (
        SELECT p.finished_at AS at, extract(epoch FROM p.finished_at - p.created_at) AS seconds
        FROM picked AS p, bounds AS b
        WHERE p.finished_at >= b.t0 AND p.result IN ('success', 'failed')
    ), claimed AS (
        SELECT p.claimed_at AS at, extract(epoch FROM p.claimed_at - p.created_at) AS seconds
        FROM picked AS p, bounds AS b
        WHERE p.claimed_at >= b.t0 AND p.result IS DISTINCT FROM 'dropped'
          AND p.result IS DISTINCT FROM 'not_started'
    ), started AS (
        -- the try's start as Airflow recorded it (task_instance by primary key: bounded by our
        -- rows); a task instance holds its latest try only, and a start before this queueing
        -- (a deferred task resumed) is not this row's
        SELECT ti.start_date AS at, extract(epoch FROM ti.start_date - p.created_at) AS seconds
        FROM picked AS p
        JOIN task_instance AS ti ON ti.id = p.ti_id AND ti.try_number = p.try_number
        CROSS JOIN bounds AS b
        WHERE ti.start_date >= p.created_at AND ti.start_date >= b.t0
    ), ended_by_minute AS (
        SELECT date_trunc('minute', at) AS minute, count(*) AS n,
               percentile_cont({_PCTS}) WITHIN GROUP (ORDER BY seconds) AS pcts
        FROM ended GROUP BY 1
    ), claimed_by_minute AS (
        SELECT date_trunc('minute', at) AS minute, count(*) AS n,
               percentile_cont({_PCTS}) WITHIN GROUP (ORDER BY seconds) AS pcts
        FROM claimed GROUP BY 1
    )
    SELECT
        {_summary_of("ended")} AS run,
        {_summary_of("claimed")} AS claim,
        {_summary_of("started")} AS start,
        (SELECT json_agg(json_build_object(
                    'minute', extract(epoch FROM k.minute),
                    'run_n', coalesce(e.n, 0), 'run', e.pcts,
                    'claim_n', coalesce(c.n, 0), 'claim', c.pcts)
                ORDER BY k.minute)
         FROM buckets AS k
         LEFT JOIN ended_by_minute AS e ON e.minute = k.minute
         LEFT JOIN claimed_by_minute AS c ON c.minute = k.minute) AS series,
        (SELECT coalesce(json_agg(json_build_object('dag_id', d.dag_id, 'ended', d.n)
                                  ORDER BY d.n DESC, d.dag_id), '[]'::json)
         FROM (SELECT r.dag_id, count(*) AS n FROM recent AS r, bounds AS b
               WHERE r.finished_at >= b.t0 AND r.result IN ('success', 'failed')
               GROUP BY r.dag_id ORDER BY n DESC, r.dag_id LIMIT 50) AS d) AS dags,
        (SELECT coalesce(json_agg(json_build_object(
                    'id', j.id, 'hostname', j.hostname,
                    'heartbeat_age', extract(epoch FROM now() - j.latest_heartbeat))
                ORDER BY j.id), '[]'::json)
         FROM job AS j WHERE j.job_type = 'SchedulerJob' AND j.state = 'running') AS schedulers,
        {_LOOP_FIGURES} AS loops
    """
)


@dataclass(frozen=True)
class QueueMinute:
    minute: float  # epoch seconds of the minute's start
    depth: int  # workloads waiting for a worker at the minute's end
    claims: int
    completions: int  # tries that ended success or failed


def queue_history(session: Session, minutes: int = 60) -> list[QueueMinute]:
    """Queue depth, claims and completions per minute over the last ``minutes`` minutes (one
    statement), oldest first; the last one is the current minute so far."""
    return [
        QueueMinute(float(r.minute), int(r.depth), int(r.claims), int(r.completions))
        for r in session.execute(_UI_QUEUE_HISTORY_SQL, {"minutes": minutes})
    ]


def _percentiles(values: Sequence[float] | None) -> dict[str, float | None]:
    p50, p90, p99 = values if values else (None, None, None)
    return {"p50": p50, "p90": p90, "p99": p99}


def _summary(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "last_5m": {"count": block["n_5m"], **_percentiles(block["pcts_5m"])},
        "window": {"count": block["n_window"], **_percentiles(block["pcts_window"])},
    }


def latency(session: Session, dag_id: str | None = None, minutes: int = 60) -> dict[str, Any]:
    """Percentiles (seconds) of run latency and queued-to-claimed, overall and per minute, and of
    queued-to-started (Airflow's ``start_date`` of the try), overall; the DAGs with ended tries
    and the running scheduler jobs; over the last ``minutes`` minutes, one statement."""
    row = session.execute(_UI_LATENCY_SQL, {"minutes": minutes, "dag_id": dag_id}).one()
    return {
        "dag_id": dag_id,
        "window_minutes": minutes,
        "run_latency": _summary(row.run),
        "queued_to_claimed": _summary(row.claim),
        "queued_to_started": _summary(row.start),
        "series": [
            {
                "minute": point["minute"],
                "run_count": point["run_n"],
                "run_latency": _percentiles(point["run"]),
                "claim_count": point["claim_n"],
                "queued_to_claimed": _percentiles(point["claim"]),
            }
            for point in row.series
        ],
        "dags": row.dags,
        "schedulers": _with_loops(row.schedulers, row.loops["jobs"]),
        "scheduler_loops": row.loops["series"],
    }


def _with_loops(schedulers: list[dict[str, Any]], loops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each running scheduler job with its loops of the last 5 minutes (None: it records none, as
    a stock ``airflow scheduler``)."""
    by_job = {entry.pop("job_id"): entry for entry in loops}
    return [{**job, "loops_5m": by_job.get(job["id"])} for job in schedulers]


# Written every few seconds by ``airflow kestra scheduler`` (:mod:`~..scheduler.loop_record`): the
# figures of one job's minute so far (replacing what it wrote for that minute before), and the rows
# of every job older than :keep_minutes deleted in the same statement.
_RECORD_LOOPS_SQL = text(
    """
    WITH gone AS (
        DELETE FROM kestra_scheduler_loop
        WHERE minute < date_trunc('minute', now()) - make_interval(mins => :keep_minutes)
    )
    INSERT INTO kestra_scheduler_loop
        (job_id, minute, hostname, loops, busy_loops, seconds, p50, p99, max)
    VALUES (:job_id, to_timestamp(:minute), :hostname, :loops, :busy_loops, :seconds, :p50, :p99, :max)
    ON CONFLICT (job_id, minute) DO UPDATE SET
        loops = excluded.loops, busy_loops = excluded.busy_loops, seconds = excluded.seconds,
        p50 = excluded.p50, p99 = excluded.p99, max = excluded.max
    """
)


@dataclass(frozen=True)
class LoopMinute:
    """One scheduler job's loops in one minute (durations in seconds)."""

    job_id: int
    hostname: str
    minute: float  # epoch seconds of the minute's start
    loops: int
    busy_loops: int
    seconds: float
    p50: float
    p99: float
    max: float


def record_scheduler_loops(session: Session, figures: LoopMinute, keep_minutes: int = 60) -> None:
    """Store ``figures`` (one statement), and delete minutes older than ``keep_minutes``."""
    session.execute(_RECORD_LOOPS_SQL, {**asdict(figures), "keep_minutes": keep_minutes})
