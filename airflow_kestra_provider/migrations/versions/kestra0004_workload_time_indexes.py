"""Indexes on ``kestra_workload.created_at`` and ``finished_at``: the UI's last-hour queue
history and latency percentiles read the rows of the last hour through them instead of scanning
the table.

Revision ID: kestra0004
Revises: kestra0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "kestra0004"
down_revision = "kestra0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("kestra_workload_created", "kestra_workload", ["created_at"])
    op.create_index("kestra_workload_finished", "kestra_workload", ["finished_at"])


def downgrade() -> None:
    op.drop_index("kestra_workload_finished", table_name="kestra_workload")
    op.drop_index("kestra_workload_created", table_name="kestra_workload")
