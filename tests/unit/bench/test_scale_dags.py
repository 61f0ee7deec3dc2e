from __future__ import annotations

import runpy

from airflow.sdk import DAG

from airflow_kestra_provider.bench.scale import scale_table
from airflow_kestra_provider.bench.scale_dags import scale_dag_id, scale_file_source


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


def test_scale_table():
    done = {
        "stack": "stock",
        "dags": 200,
        "load_seconds": 6.4,
        "created": 200,
        "finished": 200,
        "all_created_seconds": 41.5,
        "all_finished_seconds": 42.6,
        "runs_created_per_second": 4.82,
        "loops": {"p50": 0.539, "p99": 0.98, "max": 0.984},
    }
    timed_out = {
        **done,
        "stack": "ours",
        "created": 150,
        "finished": 120,
        "all_created_seconds": None,
        "all_finished_seconds": None,
        "runs_created_per_second": None,
        "loops": None,
    }
    lines = scale_table([done, timed_out]).splitlines()
    assert lines[2] == "| stock | 200 | 6.40 s | 41.50 s | 4.8 | 42.60 s | 539 ms | 980 ms | 984 ms |"
    assert "not within timeout (150 created)" in lines[3]
    assert "not within timeout (120 finished)" in lines[3]
