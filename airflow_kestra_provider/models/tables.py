"""The KestraExecutor's own tables, beside Airflow's (SQLAlchemy Core; created by our migrations).

* ``kestra_worker``: one row per worker process (embedded or ``airflow kestra worker``) with a
  heartbeat, so a dead worker's claims can be found.
* ``kestra_task_claim``: one row per claimed task instance try, keyed by ``(ti_id, try_number)``;
  the primary key is what makes a claim exclusive.

The SQL that reads and writes them is in :mod:`airflow_kestra_provider.queue.claims`.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()

kestra_worker = Table(
    "kestra_worker",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("hostname", String(1000), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("embedded", Boolean, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

kestra_task_claim = Table(
    "kestra_task_claim",
    metadata,
    Column("ti_id", UUID(as_uuid=False), primary_key=True),
    Column("try_number", Integer, primary_key=True),
    Column("worker_id", String(64), nullable=False),
    Column("job_id", Integer),
    Column("dag_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("exit_code", Integer),
    Column("detail", Text),
    Column("claimed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("reported_at", DateTime(timezone=True)),
    # finished, not yet reported: what sync() takes
    Index(
        "kestra_task_claim_unreported",
        "job_id",
        postgresql_where=text("finished_at IS NOT NULL AND reported_at IS NULL"),
    ),
    # open claims of a worker: what the reaper looks at
    Index("kestra_task_claim_open", "worker_id", postgresql_where=text("finished_at IS NULL")),
    # reported claims by age: what the purge deletes
    Index("kestra_task_claim_reported", "reported_at", postgresql_where=text("reported_at IS NOT NULL")),
)
