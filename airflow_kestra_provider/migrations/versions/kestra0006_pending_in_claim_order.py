"""``kestra_workload_pending`` in the poll statement's order (``priority_weight DESC, created_at``):
with both columns ascending PostgreSQL sorted every pending row at each poll, so a poll cost grew
with the queue's depth; in claim order a poll reads only the rows it claims.

Revision ID: kestra0006
Revises: kestra0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "kestra0006"
down_revision = "kestra0005"
branch_labels = None
depends_on = None

PENDING = "claimed_at IS NULL AND finished_at IS NULL"


def upgrade() -> None:
    op.drop_index("kestra_workload_pending", table_name="kestra_workload")
    op.create_index(
        "kestra_workload_pending",
        "kestra_workload",
        [sa.text("priority_weight DESC"), "created_at"],
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("kestra_workload_pending", table_name="kestra_workload")
    op.create_index(
        "kestra_workload_pending",
        "kestra_workload",
        ["priority_weight", "created_at"],
        postgresql_where=sa.text(PENDING),
    )
