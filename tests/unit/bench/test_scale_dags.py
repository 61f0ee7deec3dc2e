from __future__ import annotations

import runpy

import pytest
from airflow.sdk import DAG

from airflow_kestra_provider.bench.scale import creation_rate, loop_times, scale_table
from airflow_kestra_provider.bench.scale_dags import SHARED_ASSET, own_asset, scale_dag_id, scale_file_source


def _dags(namespace):
    return sorted(k for k, v in namespace.items() if isinstance(v, DAG))


def test_scale_file_defines_all_or_only_the_wanted_dag(tmp_path, monkeypatch):
    path = tmp_path / "scale.py"
    path.write_text(scale_file_source(3))
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    assert _dags(runpy.run_path(str(path))) == [scale_dag_id(0), scale_dag_id(1), scale_dag_id(2)]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", scale_dag_id(1))
    namespace = runpy.run_path(str(path))
    assert _dags(namespace) == [scale_dag_id(1)]
    dag = namespace[scale_dag_id(1)]
    assert [t.task_id for t in dag.tasks] == ["empty"]
    assert dag.catchup is False


def test_asset_scale_file_schedules_on_shared_and_own_asset(tmp_path, monkeypatch):
    path = tmp_path / "scale.py"
    path.write_text(scale_file_source(2, "assets"))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", scale_dag_id(1))
    dag = runpy.run_path(str(path))[scale_dag_id(1)]
    names = sorted(a.name for a in dag.timetable.asset_condition.objects)
    assert names == [own_asset(scale_dag_id(1)), SHARED_ASSET]
    assert type(dag.timetable.asset_condition).__name__ == "AssetAll"


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'hourly'"):
        scale_file_source(2, "hourly")


def test_loop_times_read_the_runner_debug_line():
    log = (
        "[x] DEBUG - Ran scheduling loop in 12.50 ms\n"
        "other line\n"
        "2026 [debug] Ran scheduling loop in 1500.00 ms [airflow.jobs.scheduler_job_runner]\n"
    )
    assert loop_times(log) == [0.0125, 1.5]


def test_creation_rate():
    assert creation_rate(600, 100.0) == 6.0
    assert creation_rate(0, 100.0) is None
    assert creation_rate(10, None) is None


DONE = {
    "stack": "stock",
    "dags": 200,
    "schedule": "daily",
    "load_seconds": 6.4,
    "startup_seconds": 5.2,
    "scheduled_seconds": 43.0,
    "created": 200,
    "finished": 200,
    "all_created_seconds": 41.5,
    "all_finished_seconds": 42.6,
    "runs_created_per_second": 4.82,
    "loops": {"count": 80, "p50": 0.539, "p99": 0.98, "max": 0.984},
}


def test_scale_table():
    kestra = {**DONE, "stack": "kestra", "runs_created_per_second": 48.2, "all_created_seconds": 4.15}
    timed_out = {
        **DONE,
        "stack": "kestra",
        "dags": 100000,
        "scheduled_seconds": 900.0,
        "created": 15000,
        "finished": 12000,
        "all_created_seconds": None,
        "all_finished_seconds": None,
        "runs_created_per_second": 16.7,
        "loops": None,
    }
    lines = scale_table([DONE, kestra, timed_out]).splitlines()
    assert (
        lines[2]
        == "| stock | 200 | 6.40 s | 5.20 s | 41.50 s | 4.8 | - | 42.60 s | 80 | 539 ms | 980 ms | 984 ms |"
    )
    assert lines[3].startswith("| kestra | 200 | 6.40 s | 5.20 s | 4.15 s | 48.2 | 10.0x |")
    assert "| created 15000 of 100000 in 900 s | 16.7 | - | finished 12000 of 100000 | 0 |" in lines[4]


def test_scale_table_assets_compares_loop_medians():
    stock = {**DONE, "schedule": "assets", "created": 0, "finished": 0, "runs_created_per_second": None}
    stock["startup_seconds"] = None
    stock["loops"] = {"count": 30, "p50": 1.8, "p99": 2.2, "max": 2.3}
    kestra = {**stock, "stack": "kestra", "loops": {"count": 900, "p50": 0.045, "p99": 0.09, "max": 0.1}}
    lines = scale_table([stock, kestra]).splitlines()
    assert "| 0 (asset conditions pending, 43 s) | - | - | - |" in lines[2]
    assert "| 40.0x | - | 900 | 45 ms |" in lines[3]
