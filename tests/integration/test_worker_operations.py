"""Operating a worker fleet from the CLI on a real stack: queues, names, maintenance, drain,
health, daemon mode, task logs served by a worker, and the ``kestra.`` metrics in StatsD.

One stack for the module: ``airflow kestra scheduler --skip-serve-logs`` with the KestraExecutor
and the embedded worker off; ``airflow kestra worker`` processes serve the queues ``a`` and
``b``. The worker serving ``a`` writes task logs to a folder of its own and serves them, so the
api-server can read them only over HTTP from that worker. StatsD goes to a UDP listener of the
test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_kestra_provider import metrics
from airflow_kestra_provider.stack.api_client import AirflowApiError
from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from tests.integration.conftest import wait_until
from tests.integration.reliability import trigger, wait_runs_terminal
from tests.statsd_listener import StatsdListener

pytestmark = pytest.mark.integration

WORKER_TIMEOUT = 10
PREFIX = "airflow"  # [metrics] statsd_prefix

OPS_DAG = """
import datetime
import time

from airflow.sdk import dag, task


@dag(dag_id="kestra_ops", schedule=None, catchup=False, params={"queue": "a", "sleep": 0})
def kestra_ops():
    @task
    def pick(params=None):
        return params["queue"]

    @task
    def work(params=None):
        print("ops task starts")
        time.sleep(params["sleep"])
        print("ops task ends")

    pick()
    work.override(queue="a")()


@dag(dag_id="kestra_ops_b", schedule=None, catchup=False)
def kestra_ops_b():
    @task(queue="b")
    def on_b():
        print("on b")

    on_b()


@dag(dag_id="kestra_ops_nobody", schedule=None, catchup=False)
def kestra_ops_nobody():
    @task(queue="nobody")
    def unserved():
        pass

    unserved()


@dag(dag_id="kestra_ops_drain", schedule=None, catchup=False)
def kestra_ops_drain():
    @task(queue="d")
    def long(params=None):
        time.sleep(6)

    long()


@dag(dag_id="kestra_ops_daily", schedule="@daily", start_date=datetime.datetime(2026, 1, 1), catchup=False)
def kestra_ops_daily():
    @task
    def daily():
        pass

    daily()


kestra_ops()
kestra_ops_daily()
kestra_ops_b()
kestra_ops_nobody()
kestra_ops_drain()
"""


@pytest.fixture(scope="module")
def statsd():
    with StatsdListener() as listener:
        yield listener


@pytest.fixture(scope="module")
def stack(start_stack, tmp_path_factory, statsd):
    dags = tmp_path_factory.mktemp("ops_dags")
    (dags / "kestra_ops.py").write_text(OPS_DAG)
    stack = start_stack(
        executor=KESTRA_EXECUTOR,
        scheduler_args=("kestra", "scheduler", "--skip-serve-logs"),
        dags_folder=dags,
        extra={
            "AIRFLOW__KESTRA__EMBEDDED_WORKER": "False",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__KESTRA__WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
            "AIRFLOW__SCHEDULER__POOL_METRICS_INTERVAL": "1",
        },
    )
    with stack.client() as client:
        # kestra_ops_daily: the one run the scheduler creates itself (kestra.scheduler.runs_created)
        for dag_id in (
            "kestra_ops",
            "kestra_ops_b",
            "kestra_ops_nobody",
            "kestra_ops_drain",
            "kestra_ops_daily",
        ):
            client.wait_for_dag(dag_id, timeout=180)
    return stack


def kestra(stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        airflow_argv("kestra", *args),
        env=stack.supervisor.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def worker_state(db, name: str) -> str | None:
    with db.connect() as conn:
        return conn.execute(
            sa.text("SELECT state FROM kestra_worker WHERE name = :n ORDER BY started_at DESC LIMIT 1"),
            {"n": name},
        ).scalar()


def start_worker(stack, db, name: str, *args: str, env: dict[str, str] | None = None):
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    worker = stack.supervisor.start(name, [*prefix, *airflow_argv("kestra", "worker", "--name", name, *args)])
    wait_until(
        lambda: worker_state(db, name) == "running", 120, f"worker {name} did not register", stack=stack
    )
    return worker


@pytest.fixture(scope="module")
def workers(stack, db, tmp_path_factory):
    """ops-a serves queue a (and its own task logs); ops-b serves b and the default queue."""
    logs_a = tmp_path_factory.mktemp("ops_a_logs")
    a = start_worker(
        stack, db, "ops-a", "-q", "a", "-c", "3", env={"AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs_a)}
    )
    b = start_worker(stack, db, "ops-b", "--queues", "b,default", "--skip-serve-logs")
    return {"ops-a": a, "ops-b": b, "logs_a": logs_a}


def ran_on(db, dag_id: str) -> dict[str, set[str]]:
    """task_id -> names of the workers that claimed it."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT l.task_id, w.name FROM kestra_workload AS l JOIN kestra_worker AS w "
                "ON w.id = l.worker_id WHERE l.dag_id = :d"
            ),
            {"d": dag_id},
        ).all()
    found: dict[str, set[str]] = {}
    for task_id, name in rows:
        found.setdefault(task_id, set()).add(name)
    return found


def test_queues_route_tasks_to_the_workers_that_serve_them(stack, db, workers):
    trigger(stack, "kestra_ops", 2)
    trigger(stack, "kestra_ops_b", 2)
    assert wait_runs_terminal(stack, db, "kestra_ops", 2, timeout=180) == {"success": 2}
    assert wait_runs_terminal(stack, db, "kestra_ops_b", 2, timeout=180) == {"success": 2}
    # pick is on [operators] default_queue, which ops-b serves and ops-a (-q a) does not
    assert ran_on(db, "kestra_ops") == {"pick": {"ops-b"}, "work": {"ops-a"}}
    assert ran_on(db, "kestra_ops_b") == {"on_b": {"ops-b"}}


def test_a_second_live_worker_cannot_take_a_name(stack, workers):
    result = kestra(stack, "worker", "--name", "ops-a", "--skip-serve-logs")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("airflow kestra worker: error: a worker named 'ops-a' is running"), result.stderr


def test_list_shows_the_fleet_and_queues_nobody_serves(stack, db, workers):
    [run_id] = trigger(stack, "kestra_ops_nobody", 1)
    wait_until(
        lambda: kestra(stack, "workers", "list", "-o", "json").stderr.count("'nobody'"),
        60,
        "the unserved queue was not listed",
        interval=2,
    )
    result = kestra(stack, "workers", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    listed = {w["name"]: w for w in json.loads(result.stdout)}
    assert listed["ops-a"]["queues"] == "a" and listed["ops-a"]["concurrency"] == "3"
    assert listed["ops-b"]["queues"] == "b,default"
    assert {listed[n]["state"] for n in ("ops-a", "ops-b")} == {"healthy"}
    assert listed["ops-a"]["version"]
    assert "queue 'nobody': 1 task instance(s) waiting" in result.stderr
    log = (stack.supervisor.log_dir / "scheduler.log").read_text()
    assert "'nobody'" in log and "no live" in log, "the scheduler did not warn about the unserved queue"
    with stack.client() as client:  # let it go: it would wait for task_queued_timeout
        client.request("PATCH", f"/api/v2/dags/kestra_ops_nobody/dagRuns/{run_id}", json={"state": "failed"})


def test_maintenance_stops_claims_and_resumes_them(stack, db, workers):
    result = kestra(stack, "workers", "maintenance", "ops-a", "--on")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: worker_state(db, "ops-a") == "maintenance", 10, "not in maintenance")
    time.sleep(2)  # a heartbeat or two
    [run_id] = trigger(stack, "kestra_ops", 1)
    time.sleep(8)
    assert ran_on(db, "kestra_ops").get("work") == {"ops-a"}  # only the earlier runs' claims
    with db.connect() as conn:
        waiting = conn.execute(
            sa.text(
                "SELECT count(*) FROM kestra_workload WHERE dag_id = 'kestra_ops' AND task_id = 'work' "
                "AND run_id = :r AND claimed_at IS NULL"
            ),
            {"r": run_id},
        ).scalar()
    assert waiting == 1, "a worker in maintenance claimed"
    listed = {w["name"]: w for w in json.loads(kestra(stack, "workers", "list", "-o", "json").stdout)}
    assert listed["ops-a"]["state"] == "maintenance"
    assert kestra(stack, "workers", "maintenance", "ops-a", "--off").returncode == 0
    assert wait_runs_terminal(stack, db, "kestra_ops", 3, timeout=120) == {"success": 3}
    bad = kestra(stack, "workers", "maintenance", "nobody-here", "--on")
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "airflow kestra workers maintenance: error: no worker named 'nobody-here' (see `airflow kestra workers list`)"
    )


def test_task_logs_are_read_from_the_worker_that_ran_them(stack, db, workers):
    [run_id] = trigger(stack, "kestra_ops", 1, {"queue": "a", "sleep": 8})
    path = f"/api/v2/dags/kestra_ops/dagRuns/{run_id}/taskInstances/work/logs/1"

    def log_text() -> str:
        with stack.client() as client:
            try:
                body = client.request("GET", path, headers={"Accept": "application/json"})
            except AirflowApiError:  # not there yet
                return ""
        return json.dumps(body)

    while_running = wait_until(
        lambda: "ops task starts" in log_text() and log_text(), 60, "no log while running"
    )
    assert "ops task ends" not in while_running
    assert wait_runs_terminal(stack, db, "kestra_ops", 4, timeout=120) == {"success": 4}
    after = log_text()
    assert "ops task starts" in after and "ops task ends" in after
    # the api-server's own log folder never had it: it came from ops-a's log server
    assert not list((stack.config.home / "logs").glob(f"dag_id=kestra_ops/run_id={run_id}/task_id=work/*"))
    assert list(workers["logs_a"].glob(f"dag_id=kestra_ops/run_id={run_id}/task_id=work/*"))


def test_daemon_pid_file_and_drain(stack, db, tmp_path):
    pid_file, log_file = tmp_path / "w.pid", tmp_path / "w.log"
    result = kestra(
        stack,
        "worker",
        "-D",
        "--pid",
        str(pid_file),
        "--log-file",
        str(log_file),
        "--stdout",
        str(tmp_path / "w.out"),
        "--stderr",
        str(tmp_path / "w.err"),
        "--name",
        "ops-daemon",
        "-q",
        "d",
        "--skip-serve-logs",
    )
    assert result.returncode == 0, result.stderr
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "no pid file"))
    try:
        wait_until(lambda: worker_state(db, "ops-daemon") == "running", 120, "daemon did not register")
        assert kestra(stack, "workers", "health", "ops-daemon").returncode == 0
        trigger(stack, "kestra_ops_drain", 1)
        wait_until(lambda: ran_on(db, "kestra_ops_drain"), 60, "the daemon did not claim")
        drain = kestra(stack, "workers", "drain", "ops-daemon")
        assert drain.returncode == 0, drain.stderr
        assert wait_runs_terminal(stack, db, "kestra_ops_drain", 1, timeout=120) == {"success": 1}
        wait_until(lambda: not _alive(pid), 60, "the drained daemon did not exit")
        assert worker_state(db, "ops-daemon") == "stopped"
        with db.connect() as conn:
            tries = conn.execute(
                sa.text("SELECT try_number FROM task_instance WHERE dag_id = 'kestra_ops_drain'")
            ).scalar()
        assert tries == 1
        health = kestra(stack, "workers", "health", "ops-daemon")
        assert health.returncode == 1
        assert health.stderr.startswith(
            "airflow kestra workers health: error: worker 'ops-daemon' is stopped"
        )
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_health_fails_for_a_killed_worker(stack, db, workers):
    assert kestra(stack, "workers", "health", "ops-b").returncode == 0
    start_worker(stack, db, "ops-doomed", "-q", "doomed", "--skip-serve-logs")
    component = next(c for c in stack.supervisor.components if c.name == "ops-doomed")
    assert component.process is not None
    os.kill(component.process.pid, signal.SIGKILL)
    stack.supervisor.components.remove(component)  # dead on purpose
    time.sleep(WORKER_TIMEOUT + 1)
    result = kestra(stack, "workers", "health", "ops-doomed")
    assert result.returncode == 1
    assert result.stderr.startswith("airflow kestra workers health: error: worker 'ops-doomed'"), (
        result.stderr
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_documented_metrics_arrive(stack, statsd, workers):
    """Every metric of docs/metrics.md reached StatsD, with values that make sense."""

    def got(stat: str) -> list[float]:
        return [m.value for m in statsd.metrics if m.name == f"{PREFIX}.{stat}"]

    documented = Path(__file__).resolve().parents[2].joinpath("docs", "metrics.md").read_text()
    names = [
        v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str) and v.startswith("kestra.")
    ]
    assert names and all(f"`{name}`" in documented for name in names)
    # A database outage (poll_errors) and a dead worker's claims released or failed (reaper.requeued,
    # reaper.failed) do not happen here; tests/unit/test_metrics.py sends those through Airflow's
    # StatsD client.
    rare = {metrics.WORKER_POLL_ERRORS, metrics.REAPER_REQUEUED, metrics.REAPER_FAILED}
    for stat in sorted(set(names) - rare):
        assert wait_until(lambda stat=stat: got(stat), 30, f"{stat} never arrived"), stat
    assert sum(got(metrics.WORKER_CLAIMS)) >= 10
    assert sum(got(metrics.WORKER_POLLS)) > sum(got(metrics.WORKER_EMPTY_POLLS)) > 0
    assert (
        all(v >= 0 for v in got(metrics.WORKER_POLL_DURATION)) and max(got(metrics.WORKER_POLL_DURATION)) > 0
    )
    assert max(got(metrics.WORKER_RUNNING)) >= 1 and max(got(metrics.WORKER_FREE_SLOTS)) >= 1
    assert max(got(metrics.QUEUE_DEPTH)) >= 1 and max(got(metrics.QUEUE_UNSERVED)) >= 1
    assert sum(got(metrics.SCHEDULER_RUNS_CREATED)) >= 1
    assert sum(got(metrics.REAPER_DEAD_WORKERS)) >= 1
    assert got(f"{metrics.WORKER_CLAIMS}.ops-a"), "no per-worker name for plain StatsD"
