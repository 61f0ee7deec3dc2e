"""Create kestra_worker and kestra_task_claim (provider 0.1.0).

Revision ID: kestra0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "kestra0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kestra_worker",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(1000), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("embedded", sa.Boolean, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
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
        postgresql_where=sa.text("finished_at IS NOT NULL AND reported_at IS NULL"),
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


def downgrade() -> None:
    op.drop_table("kestra_task_claim")
    op.drop_table("kestra_worker")
