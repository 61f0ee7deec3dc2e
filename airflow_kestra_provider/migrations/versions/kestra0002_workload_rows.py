"""Workers claim the workloads the scheduler queued (kestra_workload) instead of task instance
tries (kestra_task_claim), so the same try queued again can run again (provider 0.2.0).

Revision ID: kestra0002
Revises: kestra0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "kestra0002"
down_revision = "kestra0001"
branch_labels = None
depends_on = None

PENDING = "claimed_at IS NULL AND finished_at IS NULL"
UNREPORTED = "finished_at IS NOT NULL AND reported_at IS NULL"
OPEN = "claimed_at IS NOT NULL AND finished_at IS NULL"


def upgrade() -> None:
    # Open claims of the old table are tries already running: their task instances are
    # RUNNING and end through the Execution API; nothing in them needs carrying over.
    op.drop_table("kestra_task_claim")
    op.create_table(
        "kestra_workload",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("ti_id", UUID(as_uuid=False), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("queue", sa.String(256), nullable=False),
        sa.Column("priority_weight", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("workload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("result", sa.String(20)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "kestra_workload_pending",
        "kestra_workload",
        ["priority_weight", "created_at"],
        postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "kestra_workload_unreported", "kestra_workload", ["job_id"], postgresql_where=sa.text(UNREPORTED)
    )
    op.create_index("kestra_workload_open", "kestra_workload", ["worker_id"], postgresql_where=sa.text(OPEN))
    op.create_index(
        "kestra_workload_reported",
        "kestra_workload",
        ["reported_at"],
        postgresql_where=sa.text("reported_at IS NOT NULL"),
    )
    op.create_index("kestra_workload_ti", "kestra_workload", ["ti_id"])


def downgrade() -> None:
    op.drop_table("kestra_workload")
    op.create_table(
        "kestra_task_claim",
        sa.Column("ti_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("try_number", sa.Integer, primary_key=True),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "kestra_task_claim_unreported",
        "kestra_task_claim",
        ["job_id"],
        postgresql_where=sa.text(UNREPORTED),
    )
    op.create_index(
        "kestra_task_claim_open",
        "kestra_task_claim",
        ["worker_id"],
        postgresql_where=sa.text("finished_at IS NULL"),
    )
    op.create_index(
        "kestra_task_claim_reported",
        "kestra_task_claim",
        ["reported_at"],
        postgresql_where=sa.text("reported_at IS NOT NULL"),
    )
