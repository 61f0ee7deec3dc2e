"""Alembic environment of the airflow-kestra-provider tables (run by KestraDBManager)."""

from __future__ import annotations

import contextlib
from logging import getLogger
from logging.config import fileConfig
from typing import Any

from airflow import settings
from alembic import context

from airflow_kestra_provider.models.db import KestraDBManager

config = context.config
target_metadata = KestraDBManager.metadata

if not getLogger().handlers and config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_object(_obj, name, type_, *_args) -> bool:
    """Look at our tables only, never at Airflow's."""
    return type_ != "table" or name in target_metadata.tables


def _configure(**kw: Any) -> None:
    """``context.configure`` with what offline and online runs share: our metadata and version table."""
    context.configure(
        target_metadata=target_metadata,
        version_table=KestraDBManager.version_table_name,
        include_object=include_object,
        **kw,
    )


def run_migrations_offline() -> None:
    _configure(url=settings.SQL_ALCHEMY_CONN, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with contextlib.ExitStack() as stack:
        connection = config.attributes.get("connection")
        if connection is None:
            if settings.engine is None:
                raise RuntimeError("Airflow's ORM is not configured")
            connection = stack.enter_context(settings.engine.connect())
        _configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
