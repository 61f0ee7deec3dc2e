"""A bench stack with a worker of its own end to end: ``bench chain --stacks kestra-celery`` starts
a CeleryExecutor-under-``airflow kestra scheduler`` stack with its Celery worker and broker and
reports it (the stock stack runs in ``test_bench_stacks.py``; what tells the other stacks apart,
executor, scheduler command and workers, is unit-tested in ``tests/unit/stack/test_engines.py``;
the ratio rows in ``tests/unit/bench/test_writers.py``).

Its databases go on the session's embedded PostgreSQL (``--postgres-url``)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from airflow_kestra_provider.stack.processes import airflow_argv

pytestmark = pytest.mark.integration


def test_chain_with_the_celery_stack(embedded_postgres, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path / "invoker-home")
    out = tmp_path / "out"
    result = subprocess.run(
        airflow_argv(
            "kestra",
            "bench",
            "chain",
            "--stacks",
            "kestra-celery",
            "--length",
            "3",
            "--runs",
            "2",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
            "--postgres-url",
            embedded_postgres.sqlalchemy_url(),
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "chain.json").read_text())
    assert [r["stack"] for r in report["results"]] == ["kestra-celery"]
    for row in report["results"]:
        assert (row["completed"], row["succeeded"]) == (2, 2), row
        assert row["per_link"]["p50"] > 0
    lines = (out / "chain.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| kestra-celery"]
    assert (
        "starting the kestra-celery stack (CeleryExecutor, `airflow kestra scheduler`, `airflow kestra triggerer`)"
        in result.stderr
    )
    celery_log = tmp_path / "work" / "chain_kestra-celery" / "logs" / "components" / "celery-worker.log"
    assert celery_log.read_text().count("succeeded in") >= 2 * 3  # the worker ran every link
