"""The KestraExecutor's own tables, beside Airflow's (SQLAlchemy Core; created by our migrations).

* ``kestra_worker``: one row per registration of a worker process (embedded or ``airflow kestra
  worker``) with a heartbeat, so a dead worker's claims can be found; its ``name`` is what the
  fleet commands address, its ``state`` one of :data:`WORKER_STATES`.
* ``kestra_workload``: one row per time the scheduler handed a task instance to the executor
  (a new try, or the same try again after a deferral, a reschedule or a restart), with the
  ``ExecuteTask`` workload the scheduler built (token included). Workers claim these rows; the
  row's own id, not ``(ti_id, try_number)``, is what one claim and one result belong to.
* ``kestra_scheduler_loop``: one row per ``airflow kestra scheduler`` job and minute, the loops it
  ran in that minute and their durations, kept for an hour: what the UI's latency panel shows.

The SQL that reads and writes them is in :mod:`airflow_kestra_provider.queue.claims`.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

metadata = MetaData()

# running: claims; maintenance: claims nothing, its tasks go on; draining: claims nothing and
# exits when its tasks have ended; stopped: exited; dead: silent past [kestra] worker_timeout.
LIVE_WORKER_STATES = ("running", "maintenance", "draining")
WORKER_STATES = (*LIVE_WORKER_STATES, "stopped", "dead")

kestra_worker = Table(
    "kestra_worker",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(250), nullable=False, server_default=""),
    Column("hostname", String(1000), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("embedded", Boolean, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("queues", ARRAY(String(256))),  # NULL: every queue
    Column("version", String(50)),  # of the provider
    Index("kestra_worker_name", "name"),
)

kestra_workload = Table(
    "kestra_workload",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("ti_id", UUID(as_uuid=False), nullable=False),
    Column("try_number", Integer, nullable=False),
    # the executor event key
    Column("dag_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("queue", String(256), nullable=False),
    Column("priority_weight", Integer, nullable=False),
    # the scheduler job whose executor queued (or adopted) it: the one that hears the result
    Column("job_id", Integer),
    Column("workload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("worker_id", String(64)),
    Column("claimed_at", DateTime(timezone=True)),
    # success | failed: the try ended; not_started | dropped | revoked | lost: it never ran here,
    # or its end was decided elsewhere (see queue.claims)
    Column("result", String(20)),
    Column("exit_code", Integer),
    Column("detail", Text),
    Column("finished_at", DateTime(timezone=True)),
    Column("reported_at", DateTime(timezone=True)),
    # waiting for a worker, in claim order (priority_weight DESC, created_at): what the poll
    # statement reads, :limit rows of it however many are waiting
    Index(
        "kestra_workload_pending",
        text("priority_weight DESC"),
        "created_at",
        postgresql_where=text("claimed_at IS NULL AND finished_at IS NULL"),
    ),
    # finished, not yet reported: what sync() takes
    Index(
        "kestra_workload_unreported",
        "job_id",
        postgresql_where=text("finished_at IS NOT NULL AND reported_at IS NULL"),
    ),
    # open claims of a worker: what the reaper and a worker's take-over look at
    Index(
        "kestra_workload_open",
        "worker_id",
        postgresql_where=text("claimed_at IS NOT NULL AND finished_at IS NULL"),
    ),
    # reported rows by age: what the purge deletes
    Index("kestra_workload_reported", "reported_at", postgresql_where=text("reported_at IS NOT NULL")),
    Index("kestra_workload_ti", "ti_id"),
    # the last hour by creation and by end: what the UI's queue history and latency read
    Index("kestra_workload_created", "created_at"),
    Index("kestra_workload_finished", "finished_at"),
)

# Written by each ``airflow kestra scheduler`` job every few seconds (the minute so far, then its
# final figures); rows older than an hour are deleted by the same statement.
kestra_scheduler_loop = Table(
    "kestra_scheduler_loop",
    metadata,
    Column("job_id", Integer, primary_key=True),
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("hostname", String(1000), nullable=False),
    Column("loops", Integer, nullable=False),
    Column("busy_loops", Integer, nullable=False),
    Column("seconds", Float, nullable=False),  # all loops of the minute together
    Column("p50", Float, nullable=False),
    Column("p99", Float, nullable=False),
    Column("max", Float, nullable=False),
    Index("kestra_scheduler_loop_minute", "minute"),
)
