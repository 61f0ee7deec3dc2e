"""`airflow kestra bench run` as an operator runs it: a subprocess whose Airflow config points at a
real stack (api-server, dag-processor, triggerer, scheduler, LocalExecutor, PostgreSQL)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from airflow_kestra_provider.stack.processes import airflow_argv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(start_stack):
    stack = start_stack()
    with stack.client() as client:
        client.wait_for_dag("kestra_bench_noop", timeout=120)
    return stack


def _bench(stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # stack.env is the deployment's own config: AIRFLOW_HOME (with the generated admin password),
    # [api] base_url and [database] sql_alchemy_conn. The bench finds everything from it.
    return subprocess.run(
        airflow_argv("kestra", "bench", "run", *args),
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_every_run_is_counted(stack):
    result = _bench(stack, "--rate", "2", "--duration", "5", "--warmup", "0", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads(result.stdout)
    [step] = body["results"]
    assert step["rate"] == 2
    assert step["sent"] == 10
    assert step["send_errors"] == 0
    assert step["completed"] == 10
    assert step["succeeded"] == 10
    assert step["drained"] is True
    assert step["latency"]["count"] == 10
    assert 0 < step["latency"]["p50"] <= step["latency"]["p99"] <= step["latency"]["max"]
    assert 0 < step["to_first_task"]["p50"] < step["latency"]["max"]
    # The database holds exactly the bench's runs: nothing lost, nothing double-counted.
    with stack.client() as client:
        runs = client.list_runs("kestra_bench_noop", limit=100)
    assert len([r for r in runs if r["dag_run_id"].startswith("kbench-")]) == 10
    assert "finished" in result.stderr  # the progress bar went to stderr


def test_cpu_per_component(stack):
    """--cpu finds every component of the stack by its AIRFLOW_HOME and the database's server."""
    result = _bench(stack, "--rate", "2", "--duration", "5", "--warmup", "0", "--json", "--cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    [step] = json.loads(result.stdout)["results"]
    cpu = step["cpu"]
    assert cpu["runs"] == step["completed"] == 10
    rows = {row["component"]: row for row in cpu["components"]}
    assert set(rows) == {"api-server", "scheduler", "dag-processor", "triggerer", "postgres"}
    for name in ("api-server", "scheduler", "postgres"):  # these did work for every run
        assert rows[name]["cpu_seconds"] > 0, name
        assert rows[name]["per_run"] == pytest.approx(rows[name]["cpu_seconds"] / 10)
    assert 0 < rows["scheduler"]["own_seconds"] <= rows["scheduler"]["cpu_seconds"]
    assert cpu["total"]["cpu_seconds"] == pytest.approx(sum(row["cpu_seconds"] for row in rows.values()))
    assert "--cpu: sampling api-server, dag-processor, postgres, scheduler, triggerer" in result.stderr


def test_unknown_dag_id(stack):
    result = _bench(stack, "--dag", "no_such_dag", "--rate", "2", "--duration", "1", timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1] == f"airflow kestra bench: error: unknown DAG id 'no_such_dag' at {stack.config.base_url}"
    )
    assert [line for line in lines if "error" in line.lower()] == [lines[-1]]


def test_unreachable_api(stack):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _bench(stack, "--rate", "2", "--api-url", f"http://127.0.0.1:{port}", timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"airflow kestra bench: error: cannot reach the Airflow API at http://127.0.0.1:{port}"
    )
