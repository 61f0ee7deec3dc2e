"""`bench compare` and `bench scale` end to end on throw-away stacks (stock only, tiny loads).

They create their databases on the session's embedded PostgreSQL (``--postgres-url``)."""

from __future__ import annotations

import json
import os
import struct
import subprocess

import pytest

from airflow_kestra_provider.stack.processes import airflow_argv

pytestmark = pytest.mark.integration


def _bench(tmp_path, postgres, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``airflow kestra bench ARGS`` writing to ``tmp_path/out`` (``-o json``), its throw-away
    homes under ``tmp_path/work`` and its databases on the session's ``postgres``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path / "invoker-home")
    common = ["--out", str(tmp_path / "out"), "-o", "json", "--work-dir", str(tmp_path / "work")]
    return subprocess.run(
        airflow_argv("kestra", "bench", *args, *common, "--postgres-url", postgres.sqlalchemy_url()),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_compare_writes_table_plot_and_json(embedded_postgres, tmp_path):
    out = tmp_path / "out"
    result = _bench(
        tmp_path,
        embedded_postgres,
        "compare",
        "--stacks", "stock",
        "--rates", "2",
        "--duration", "3",
        "--warmup", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    [step] = report["results"]["stock"]
    assert (step["rate"], step["sent"], step["completed"], step["succeeded"]) == (2, 6, 6, 6)
    assert step["latency"]["p50"] > 0
    assert "| 2/s | 6 |" in (out / "results.md").read_text()
    png = (out / "latency.png").read_bytes()
    assert struct.unpack(">II", png[16:24]) == (800, 500)
    rows = json.loads(result.stdout)  # -o json: the table's rows
    assert [(r["stack"], r["rate"], r["sent"], r["finished"]) for r in rows] == [("stock", "2/s", "6", "6")]


def test_scale_creates_and_finishes_every_run(embedded_postgres, tmp_path):
    result = _bench(
        tmp_path,
        embedded_postgres,
        "scale",
        "--stacks", "stock",
        "--dags", "30",
        "--timeout", "300",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [stock] = json.loads((tmp_path / "out" / "scale.json").read_text())["results"]
    assert (stock["created"], stock["finished"]) == (30, 30)
    assert 0 < stock["all_created_seconds"] <= stock["all_finished_seconds"]
    assert stock["loops"]["count"] > 0


def test_claims_claims_every_queued_task_instance_once_per_case(embedded_postgres, tmp_path):
    """The poll statement on Airflow's real schema, directly and through the delay proxy: each case
    empties the queue, and the claims add up to the rows (none claimed twice)."""
    out = tmp_path / "out"
    result = _bench(
        tmp_path,
        embedded_postgres,
        "claims",
        "--rows", "400",
        "--poll-sizes", "1,50",
        "--pollers", "1,3",
        "--delays", "0,2",
        "--duration", "60",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "claims.json").read_text())
    assert len(report["results"]) == 8
    for case in report["results"]:
        assert case["emptied"] and case["claimed"] == 400, case
        assert case["claims_per_second"] > 0
        if case["delay_ms"] == 2:
            assert case["poll_p50_ms"] >= 2, case  # every poll paid the round trip
    assert "Round trip added: 2 ms" in (out / "claims.md").read_text()
    assert len(json.loads(result.stdout)) == 8
