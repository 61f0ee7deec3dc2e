"""Every SQL statement of the KestraExecutor's queue, in one place (PostgreSQL).

Two tables of our own sit beside Airflow's, ``kestra_worker`` and ``kestra_task_claim``
(defined in :mod:`airflow_kestra_provider.models.tables`, created by ``airflow db migrate``).
The primary key ``(ti_id, try_number)`` of a claim is what makes it exclusive: two workers can
never both insert it.

The hot path is :func:`claim`: ONE statement per poll that locks up to ``limit`` queued task
instances (``FOR UPDATE SKIP LOCKED``), inserts their claim rows and returns everything a
workload needs (DAG file, bundle, log-path fields) in the same round trip.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

NOTIFY_CHANNEL = "kestra_task_queued"
_CLAIM_SQL = text(
    """
    WITH candidate AS (
        SELECT ti.id, ti.try_number, ti.queued_by_job_id, ti.dag_id, ti.task_id, ti.run_id, ti.map_index
        FROM task_instance AS ti
        WHERE ti.state = 'queued'
          AND (ti.executor = ANY(:executor_names) OR (:default_executor AND ti.executor IS NULL))
          AND (:all_queues OR ti.queue = ANY(:queues))
          AND NOT EXISTS (
              SELECT 1 FROM kestra_task_claim AS c WHERE c.ti_id = ti.id AND c.try_number = ti.try_number
          )
        ORDER BY ti.priority_weight DESC, ti.queued_dttm
        LIMIT :limit
        FOR UPDATE OF ti SKIP LOCKED
    ), claimed AS (
        INSERT INTO kestra_task_claim
            (ti_id, try_number, worker_id, job_id, dag_id, task_id, run_id, map_index, state, claimed_at)
        SELECT id, try_number, :worker_id, queued_by_job_id, dag_id, task_id, run_id, map_index,
               'claimed', now()
        FROM candidate
        ON CONFLICT (ti_id, try_number) DO NOTHING
        RETURNING ti_id, try_number
    )
    SELECT ti.id, ti.task_id, ti.dag_id, ti.run_id, ti.map_index, claimed.try_number,
           ti.dag_version_id, ti.hostname, ti.context_carrier, ti.queue, ti.pool_slots,
           ti.priority_weight, dag.relative_fileloc, dag.bundle_name, dr.bundle_version, dr.logical_date
    FROM claimed
    JOIN task_instance AS ti ON ti.id = claimed.ti_id
    JOIN dag_run AS dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id
    JOIN dag ON dag.dag_id = ti.dag_id
    """
)

_FINISH_SQL = text(
    """
    UPDATE kestra_task_claim AS c
    SET state = r.state, exit_code = r.exit_code, detail = r.detail, finished_at = now()
    FROM unnest(CAST(:ti_ids AS uuid[]), CAST(:tries AS integer[]), CAST(:states AS varchar[]),
                CAST(:exit_codes AS integer[]), CAST(:details AS text[]))
         AS r(ti_id, try_number, state, exit_code, detail)
    WHERE c.ti_id = r.ti_id AND c.try_number = r.try_number AND c.finished_at IS NULL
    """
)

_REPORT_SQL = text(
    """
    UPDATE kestra_task_claim AS c
    SET reported_at = now()
    WHERE c.finished_at IS NOT NULL AND c.reported_at IS NULL
      AND COALESCE(
          (SELECT ti.queued_by_job_id FROM task_instance AS ti WHERE ti.id = c.ti_id), c.job_id
      ) IS NOT DISTINCT FROM :job_id
    RETURNING c.dag_id, c.task_id, c.run_id, c.map_index, c.try_number, c.state, c.detail
    """
)

_ADOPT_SQL = text(
    """
    WITH moved AS (
        UPDATE kestra_task_claim SET job_id = :job_id
        WHERE ti_id = ANY(CAST(:ti_ids AS uuid[])) AND reported_at IS NULL
    )
    SELECT dag_id, task_id, run_id, map_index, try_number
    FROM task_instance WHERE id = ANY(CAST(:ti_ids AS uuid[]))
    """
)

_RELEASE_SQL = text("DELETE FROM kestra_task_claim WHERE ti_id = CAST(:ti_id AS uuid) AND try_number = :try")

_REGISTER_SQL = text(
    """
    INSERT INTO kestra_worker (id, hostname, pid, embedded, concurrency, state, started_at, heartbeat_at)
    VALUES (:id, :hostname, :pid, :embedded, :concurrency, 'running', now(), now())
    """
)

_HEARTBEAT_SQL = text("UPDATE kestra_worker SET heartbeat_at = now() WHERE id = :id AND state = 'running'")

_STOP_SQL = text("UPDATE kestra_worker SET state = 'stopped', heartbeat_at = now() WHERE id = :id")

# A worker whose heartbeat is older than the timeout is dead. Its claims on task instances that
# are still QUEUED with the same try are deleted (the task never started: another worker may
# claim it); its other open claims are finished as failed, so the scheduler hears of them.
_REAP_SQL = text(
    """
    WITH dead AS (
        UPDATE kestra_worker SET state = 'dead'
        WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => :timeout)
        RETURNING id
    ), released AS (
        DELETE FROM kestra_task_claim AS c
        USING dead, task_instance AS ti
        WHERE c.worker_id = dead.id AND c.finished_at IS NULL
          AND ti.id = c.ti_id AND ti.try_number = c.try_number AND ti.state = 'queued'
        RETURNING c.ti_id, c.try_number
    ), failed AS (
        UPDATE kestra_task_claim AS c
        SET state = 'failed', finished_at = now(), detail = 'worker ' || c.worker_id || ' lost'
        FROM dead
        WHERE c.worker_id = dead.id AND c.finished_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM released AS r WHERE r.ti_id = c.ti_id AND r.try_number = c.try_number)
        RETURNING c.ti_id
    )
    SELECT (SELECT count(*) FROM dead), (SELECT count(*) FROM released), (SELECT count(*) FROM failed)
    """
)

_PURGE_SQL = text(
    """
    WITH claims AS (
        DELETE FROM kestra_task_claim WHERE reported_at < now() - make_interval(secs => :retention)
        RETURNING 1
    )
    DELETE FROM kestra_worker
    WHERE state <> 'running' AND heartbeat_at < now() - make_interval(secs => :retention)
    """
)

_NOTIFY_SQL = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")


@dataclass(frozen=True)
class ClaimedTask:
    """One claimed task instance try with what its workload needs."""

    id: str
    task_id: str
    dag_id: str
    run_id: str
    map_index: int
    try_number: int
    dag_version_id: str
    hostname: str | None
    context_carrier: dict[str, Any] | None
    queue: str
    pool_slots: int
    priority_weight: int
    relative_fileloc: str | None
    bundle_name: str
    bundle_version: str | None
    logical_date: Any


@dataclass(frozen=True)
class TaskResult:
    """How one claimed try ended on its worker."""

    ti_id: str
    try_number: int
    state: str  # "success" or "failed"
    exit_code: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class FinishedClaim:
    """A finished try not yet reported to the scheduler that queued it."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    state: str
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
    "SELECT to_regclass('kestra_worker') IS NOT NULL AND to_regclass('kestra_task_claim') IS NOT NULL"
)


def tables_present(session: Session) -> bool:
    """Whether ``airflow db migrate`` has created our tables (KestraDBManager)."""
    return bool(session.execute(_TABLES_PRESENT_SQL).scalar())


def claim(
    session: Session,
    *,
    worker_id: str,
    limit: int,
    executor_names: Sequence[str],
    default_executor: bool,
    queues: Iterable[str],
) -> list[ClaimedTask]:
    """Claim up to ``limit`` queued task instances for ``worker_id`` in one statement."""
    queue_list = sorted(queues)
    rows = session.execute(
        _CLAIM_SQL,
        {
            "worker_id": worker_id,
            "limit": limit,
            "executor_names": list(executor_names),
            "default_executor": default_executor,
            "all_queues": not queue_list,
            "queues": queue_list or [""],
        },
    ).all()
    return [_claimed_task(row) for row in rows]


def _claimed_task(row: Any) -> ClaimedTask:
    carrier = row.context_carrier
    if isinstance(carrier, str):
        carrier = json.loads(carrier)
    return ClaimedTask(
        id=str(row.id),
        task_id=row.task_id,
        dag_id=row.dag_id,
        run_id=row.run_id,
        map_index=row.map_index,
        try_number=row.try_number,
        dag_version_id=str(row.dag_version_id),
        hostname=row.hostname,
        context_carrier=carrier,
        queue=row.queue or "default",
        pool_slots=row.pool_slots,
        priority_weight=row.priority_weight or 1,
        relative_fileloc=row.relative_fileloc,
        bundle_name=row.bundle_name,
        bundle_version=row.bundle_version,
        logical_date=row.logical_date,
    )


def finish(session: Session, results: Sequence[TaskResult]) -> None:
    """Record how a batch of claimed tries ended: one statement for the whole batch."""
    if not results:
        return
    session.execute(
        _FINISH_SQL,
        {
            "ti_ids": [r.ti_id for r in results],
            "tries": [r.try_number for r in results],
            "states": [r.state for r in results],
            "exit_codes": [r.exit_code for r in results],
            "details": [r.detail for r in results],
        },
    )


def report_finished(session: Session, job_id: int | None) -> list[FinishedClaim]:
    """Take the finished, unreported tries owned by scheduler job ``job_id``: the job that
    queued the task instance, or adopted it since (``task_instance.queued_by_job_id``)."""
    rows = session.execute(_REPORT_SQL, {"job_id": job_id}).all()
    return [FinishedClaim(*row) for row in rows]


def adopt(
    session: Session, job_id: int | None, ti_ids: Sequence[str]
) -> list[tuple[str, str, str, int, int]]:
    """Route the results of ``ti_ids`` to scheduler job ``job_id`` (it adopted them); returns their
    keys as ``(dag_id, task_id, run_id, map_index, try_number)``."""
    if not ti_ids:
        return []
    rows = session.execute(_ADOPT_SQL, {"job_id": job_id, "ti_ids": list(ti_ids)}).all()
    return [(r.dag_id, r.task_id, r.run_id, r.map_index, r.try_number) for r in rows]


def release(session: Session, ti_id: str, try_number: int) -> None:
    """Forget the claim of one try so it can be claimed again (the scheduler revoked it)."""
    session.execute(_RELEASE_SQL, {"ti_id": ti_id, "try": try_number})


def register_worker(
    session: Session, *, worker_id: str, hostname: str, pid: int, embedded: bool, concurrency: int
) -> None:
    session.execute(
        _REGISTER_SQL,
        {"id": worker_id, "hostname": hostname, "pid": pid, "embedded": embedded, "concurrency": concurrency},
    )


def heartbeat(session: Session, worker_id: str) -> bool:
    """Refresh ``worker_id``'s heartbeat; False when it was declared dead meanwhile."""
    return bool(getattr(session.execute(_HEARTBEAT_SQL, {"id": worker_id}), "rowcount", 0))


def stop_worker(session: Session, worker_id: str) -> None:
    session.execute(_STOP_SQL, {"id": worker_id})


def reap_dead_workers(session: Session, timeout: float) -> tuple[int, int, int]:
    """Declare workers silent for ``timeout`` s dead; returns (workers, claims released, claims failed)."""
    row = session.execute(_REAP_SQL, {"timeout": timeout}).one()
    return int(row[0]), int(row[1]), int(row[2])


def purge(session: Session, retention: float) -> None:
    """Delete claims reported, and workers stopped, more than ``retention`` seconds ago."""
    session.execute(_PURGE_SQL, {"retention": retention})


def notify(session: Session) -> None:
    """Wake every LISTENing poller (delivered when the session commits)."""
    session.execute(_NOTIFY_SQL)


# -- status for the web UI page (not the hot path) -------------------------------------------------
_TABLES_EXIST_SQL = text("SELECT to_regclass('kestra_task_claim') IS NOT NULL")

_QUEUE_STATUS_SQL = text(
    """
    SELECT
        (SELECT count(*) FROM task_instance WHERE state = 'queued') AS queued,
        (SELECT count(*) FROM task_instance WHERE state = 'running') AS running,
        (SELECT count(*) FROM kestra_task_claim WHERE finished_at IS NULL) AS claims_open,
        (SELECT count(*) FROM kestra_task_claim
            WHERE claimed_at > now() - make_interval(secs => :window)) AS claims_in_window,
        (SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
                ORDER BY extract(epoch FROM dr.end_date - dr.queued_at))
            FROM dag_run AS dr
            WHERE dr.end_date > now() - make_interval(secs => :window) AND dr.queued_at IS NOT NULL
        ) AS run_latency
    """
)

_WORKERS_SQL = text(
    """
    SELECT id, hostname, pid, embedded, concurrency, state,
           extract(epoch FROM now() - heartbeat_at) AS heartbeat_age
    FROM kestra_worker
    WHERE state = 'running' OR heartbeat_at > now() - interval '10 minutes'
    ORDER BY started_at
    """
)


def queue_status(session: Session, window: float = 300.0) -> dict[str, Any]:
    """Queue depth, claim rate, workers and run latency percentiles over the last ``window`` s."""
    if not session.execute(_TABLES_EXIST_SQL).scalar():
        return {"installed": False, "window_seconds": window, "workers": []}
    row = session.execute(_QUEUE_STATUS_SQL, {"window": window}).one()
    latency = list(row.run_latency) if row.run_latency else [None, None, None]
    return {
        "installed": True,
        "window_seconds": window,
        "queued": row.queued,
        "running": row.running,
        "claims_open": row.claims_open,
        "claims_per_second": row.claims_in_window / window,
        "run_latency_seconds": {"p50": latency[0], "p90": latency[1], "p99": latency[2]},
        "workers": [
            {
                "id": w.id,
                "hostname": w.hostname,
                "pid": w.pid,
                "embedded": w.embedded,
                "concurrency": w.concurrency,
                "state": w.state,
                "heartbeat_age_seconds": float(w.heartbeat_age),
            }
            for w in session.execute(_WORKERS_SQL)
        ],
    }
