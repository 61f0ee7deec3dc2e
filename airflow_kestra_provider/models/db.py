"""KestraDBManager: ``airflow db migrate`` creates and upgrades our tables, with their own
Alembic version table (``alembic_version_kestra``), next to Airflow's.

Airflow finds the manager through ``db-managers`` in our provider info (it also honours
``[database] external_db_managers``).
"""

from __future__ import annotations

from pathlib import Path

from airflow.utils.db_manager import BaseDBManager

from airflow_kestra_provider.models.tables import metadata

PACKAGE_DIR = Path(__file__).resolve().parents[1]


class KestraDBManager(BaseDBManager):
    """Migrations of ``kestra_worker``, ``kestra_workload`` and ``kestra_scheduler_loop``."""

    metadata = metadata
    version_table_name = "alembic_version_kestra"
    migration_dir = str(PACKAGE_DIR / "migrations")
    alembic_file = str(PACKAGE_DIR / "migrations" / "alembic.ini")
    supports_table_dropping = True
    # provider version -> the migration head it ships
    revision_heads_map = {"0.1.0": "kestra0001", "0.2.0": "kestra0006"}  # noqa: RUF012 - the base class declares it so
