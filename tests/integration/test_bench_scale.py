"""``bench scale`` loader and command on real PostgreSQL and a real scheduler.

* Faithfulness: the rows the SQL clone writes equal (ids and timestamps aside) what the
  dag-processor's ``update_dag_parsing_results_in_db`` writes after a full parse of the same file.
* The command end to end with our stack: a scheduler creates and finishes a run for every cloned
  DAG; with ``--schedule assets`` it loops over pending conditions and creates no run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.bench.compare import StackPlan
from airflow_kestra_provider.bench.scale import load_dags, scale
from airflow_kestra_provider.bench.scale_dags import SCALE_FILE, SHARED_ASSET, scale_file_source
from airflow_kestra_provider.stack.environment import StackConfig, free_port
from airflow_kestra_provider.stack.stack import AirflowStack
from tests.integration.conftest import DAGS_EXAMPLES, create_database

COUNT = 30
# Per table: how its rows are ordered, and what differs by construction (fresh ids, write times).
IGNORED = {"id", "created_at", "last_updated", "last_parsed_time", "dag_version_id"}
ORDER = {
    "dag": "dag_id",
    "dag_tag": "dag_id, name",
    "dag_version": "dag_id",
    "serialized_dag": "dag_id",
    "dag_code": "dag_id",
}


@pytest.fixture(scope="module")
def migrated(migrated_template) -> str:
    """The session's migrated database, which the loads below copy (CREATE DATABASE ... TEMPLATE)."""
    return migrated_template


def _load(
    embedded_postgres, tmp_path_factory, migrated: str, name: str, method: str, schedule: str = "daily"
) -> str:
    home = tmp_path_factory.mktemp(name)
    # One folder per schedule: the file's path is part of what is written.
    dags = tmp_path_factory.getbasetemp() / f"scale_dags_{schedule}"
    dags.mkdir(exist_ok=True)
    (dags / SCALE_FILE).write_text(scale_file_source(COUNT, schedule))
    config = StackConfig(
        home=home,
        sql_alchemy_conn=create_database(embedded_postgres, name, template=migrated),
        dags_folder=dags,
        port=free_port(),
    )
    loaded = load_dags(AirflowStack(config), dags, COUNT, method, schedule)
    assert loaded["method"] == method
    return config.sql_alchemy_conn


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: [
                    {k: v for k, v in row._mapping.items() if k not in IGNORED}
                    for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))
                ]
                for table, order in ORDER.items()
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def parsed(embedded_postgres, tmp_path_factory, migrated):
    return _rows(_load(embedded_postgres, tmp_path_factory, migrated, "scale_parsed", "parse"))


def test_sql_clone_writes_what_the_dag_processor_writes(
    parsed, embedded_postgres, tmp_path_factory, migrated
):
    cloned = _rows(_load(embedded_postgres, tmp_path_factory, migrated, "scale_cloned", "clone"))
    assert [len(parsed[t]) for t in ORDER] == [COUNT, 2 * COUNT, COUNT, COUNT, COUNT]
    assert len({r["dag_hash"] for r in parsed["serialized_dag"]}) == COUNT
    for table in ORDER:
        assert cloned[table] == parsed[table], table


def test_asset_dags_hold_pending_conditions(embedded_postgres, tmp_path_factory, migrated):
    url = _load(embedded_postgres, tmp_path_factory, migrated, "scale_assets", "processor", "assets")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            queued = conn.execute(
                sa.text(
                    "SELECT count(DISTINCT q.target_dag_id), min(a.name), max(a.name) "
                    "FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id"
                )
            ).one()
            refs = conn.execute(sa.text("SELECT count(*) FROM dag_schedule_asset_reference")).scalar()
    finally:
        engine.dispose()
    assert tuple(queued) == (COUNT, SHARED_ASSET, SHARED_ASSET)
    assert refs == 2 * COUNT


@pytest.fixture(scope="module")
def plan(embedded_postgres, tmp_path_factory) -> StackPlan:
    return StackPlan(
        dags_source=DAGS_EXAMPLES,
        stacks=("kestra",),
        work_dir=tmp_path_factory.mktemp("scale_cmd"),
        postgres_url=embedded_postgres.sqlalchemy_url(),
        quiet=True,
    )


def test_scheduler_runs_every_cloned_dag(plan: StackPlan, tmp_path: Path):
    report = scale(plan, [COUNT], timeout=150, out=tmp_path, log=print)
    (result,) = report["results"]
    assert result["load"]["method"] == "clone"
    assert (result["created"], result["finished"]) == (COUNT, COUNT)
    assert result["all_created_seconds"] is not None
    # The DAGs were paused until the scheduler looped: no run exists from before they became due.
    assert result["startup_seconds"] > 0
    assert result["first_created_seconds"] >= 0
    assert result["loops"]["count"] > 0
    assert (tmp_path / "scale.json").exists()
    assert f"| kestra | {COUNT} |" in (tmp_path / "scale.md").read_text()


def test_asset_schedule_times_loops_and_creates_no_run(plan: StackPlan):
    report = scale(plan, [COUNT], timeout=150, out=None, log=print, schedule="assets", duration=10)
    (result,) = report["results"]
    assert result["load"]["method"] == "processor"
    assert result["created"] == 0
    assert result["loops"]["count"] > 0
