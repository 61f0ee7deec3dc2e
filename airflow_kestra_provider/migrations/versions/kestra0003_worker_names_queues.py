"""Workers carry a name (what the fleet commands address), the queues they serve and the
provider version they run; ``maintenance`` and ``draining`` join the worker states.

Revision ID: kestra0003
Revises: kestra0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "kestra0003"
down_revision = "kestra0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("kestra_worker", sa.Column("name", sa.String(250), nullable=False, server_default=""))
    op.execute("UPDATE kestra_worker SET name = id")
    # NULL: every queue
    op.add_column("kestra_worker", sa.Column("queues", ARRAY(sa.String(256))))
    op.add_column("kestra_worker", sa.Column("version", sa.String(50)))
    op.create_index("kestra_worker_name", "kestra_worker", ["name"])


def downgrade() -> None:
    op.drop_index("kestra_worker_name", table_name="kestra_worker")
    op.drop_column("kestra_worker", "version")
    op.drop_column("kestra_worker", "queues")
    op.drop_column("kestra_worker", "name")
    op.execute("UPDATE kestra_worker SET state = 'running' WHERE state IN ('maintenance', 'draining')")
