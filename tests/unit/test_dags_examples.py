from __future__ import annotations

from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags_examples"
EXPECTED = {
    "kestra_bench_noop",
    "kestra_bench_chain10",
    "kestra_fan_out_in",
    "kestra_retries_and_failure",
    "kestra_daily_cron",
    "kestra_asset_producer",
    "kestra_asset_consumer",
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_file_defines_a_documented_dag(dagbag):
    files = {p.stem for p in DAGS_FOLDER.glob("*.py")}
    assert files, "no example DAGs"
    assert set(dagbag.dag_ids) >= EXPECTED
    for path in DAGS_FOLDER.glob("*.py"):
        assert path.read_text().lstrip().startswith('"""'), f"{path.name} has no docstring"


def test_chain_has_ten_links(dagbag):
    assert len(dagbag.dags["kestra_bench_chain10"].tasks) == 10
