"""``airflow db migrate`` creates the KestraExecutor's tables through KestraDBManager, with their
own Alembic version table, and what the migrations build is exactly the models' schema.

On an empty database ``airflow db migrate`` builds the tables from the models and stamps the
head (the path every other integration module takes); ``--use-migration-files`` runs our
migration scripts instead, which is what this module checks against the models.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from airflow_kestra_provider import __version__
from airflow_kestra_provider.models.db import KestraDBManager
from airflow_kestra_provider.models.tables import metadata
from airflow_kestra_provider.stack.environment import (
    KESTRA_EXECUTOR,
    StackConfig,
    free_port,
    stack_environment,
)
from airflow_kestra_provider.stack.processes import run_airflow
from tests.integration.conftest import DAGS_EXAMPLES, create_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def migrated(embedded_postgres, tmp_path_factory):
    url = create_database(embedded_postgres, "test_executor_schema")
    config = StackConfig(
        home=tmp_path_factory.mktemp("schema_home"),
        sql_alchemy_conn=url,
        dags_folder=DAGS_EXAMPLES,
        port=free_port(),
        executor=KESTRA_EXECUTOR,
    )
    env = stack_environment(config)
    run_airflow(env, "db", "migrate", "--use-migration-files")
    engine = sa.create_engine(url)
    yield env, engine
    engine.dispose()


def test_db_migrate_creates_our_tables_with_their_own_version_table(migrated):
    _, engine = migrated
    with engine.connect() as conn:
        ours = conn.execute(
            sa.text(f"SELECT version_num FROM {KestraDBManager.version_table_name}")
        ).scalars()
        assert list(ours) == [KestraDBManager.revision_heads_map[__version__]]
        airflow_heads = conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one()
        assert airflow_heads == 1  # Airflow's own version table is untouched by ours
        tables = set(sa.inspect(conn).get_table_names())
    assert {"kestra_worker", "kestra_workload", "kestra_scheduler_loop"} <= tables
    assert "kestra_task_claim" not in tables  # replaced by kestra_workload (kestra0002)


def test_migrations_build_exactly_the_models(migrated):
    _, engine = migrated
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda _o, name, type_, *_: type_ != "table" or name in metadata.tables,
            },
        )
        assert compare_metadata(context, metadata) == []
        indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes("kestra_workload")}
    assert set(indexes) == {
        "kestra_workload_pending",
        "kestra_workload_unreported",
        "kestra_workload_open",
        "kestra_workload_reported",
        "kestra_workload_ti",
        "kestra_workload_created",
        "kestra_workload_finished",
    }
    pending = indexes["kestra_workload_pending"]["dialect_options"]["postgresql_where"]
    assert "claimed_at IS NULL" in pending and "finished_at IS NULL" in pending
    with engine.connect() as conn:
        definition = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'kestra_workload_pending'")
        ).scalar_one()
    assert "(priority_weight DESC, created_at)" in definition  # the poll statement's order


def test_db_migrate_again_changes_nothing(migrated):
    env, engine = migrated
    run_airflow(env, "db", "migrate")
    with engine.connect() as conn:
        ours = conn.execute(
            sa.text(f"SELECT version_num FROM {KestraDBManager.version_table_name}")
        ).scalars()
        assert list(ours) == [KestraDBManager.revision_heads_map[__version__]]


def test_tables_made_before_the_migrations_existed_are_adopted(embedded_postgres, tmp_path_factory):
    """Earlier builds created the tables at component start, without a version table: the
    first ``airflow db migrate`` stamps them instead of failing on CREATE TABLE."""
    url = create_database(embedded_postgres, "test_executor_schema_old")
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
        config = StackConfig(
            home=tmp_path_factory.mktemp("schema_old_home"),
            sql_alchemy_conn=url,
            dags_folder=DAGS_EXAMPLES,
            port=free_port(),
            executor=KESTRA_EXECUTOR,
        )
        run_airflow(stack_environment(config), "db", "migrate")
        with engine.connect() as conn:
            ours = conn.execute(sa.text(f"SELECT version_num FROM {KestraDBManager.version_table_name}"))
            assert list(ours.scalars()) == [KestraDBManager.revision_heads_map[__version__]]
    finally:
        engine.dispose()
