"""``kestra_scheduler_loop``: per scheduler job and minute, its loops and their durations, for the
UI's latency panel (an hour of them is kept).

Revision ID: kestra0005
Revises: kestra0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "kestra0005"
down_revision = "kestra0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kestra_scheduler_loop",
        sa.Column("job_id", sa.Integer, primary_key=True),
        sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("hostname", sa.String(1000), nullable=False),
        sa.Column("loops", sa.Integer, nullable=False),
        sa.Column("busy_loops", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("p50", sa.Float, nullable=False),
        sa.Column("p99", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
    )
    op.create_index("kestra_scheduler_loop_minute", "kestra_scheduler_loop", ["minute"])


def downgrade() -> None:
    op.drop_index("kestra_scheduler_loop_minute", table_name="kestra_scheduler_loop")
    op.drop_table("kestra_scheduler_loop")
