"""``airflow kestra standalone`` end to end: embedded PostgreSQL, every component, example DAGs,
and a clean stop on SIGTERM that leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from airflow_kestra_provider.stack.api_client import AirflowApiClient
from airflow_kestra_provider.stack.environment import free_port
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

READY = re.compile(r"Airflow is ready: (\S+)")
LOGIN = re.compile(r"login: (\S+) / (\S+)")


class Standalone:
    def __init__(self, process: subprocess.Popen[str], base_url: str, user: str, password: str, home: Path):
        self.process = process
        self.base_url = base_url
        self.user = user
        self.password = password
        self.home = home
        self.output: list[str] = []

    def client(self) -> AirflowApiClient:
        return AirflowApiClient(self.base_url, self.user, self.password)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def postgres_pid(self) -> int:
        return int((self.home / "kestra-postgres" / "postmaster.pid").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> Iterator[Standalone]:
    home = tmp_path_factory.mktemp("standalone-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "kestra", "standalone", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    base_url = user = password = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        lines.append(line)
        if match := READY.search(line):
            base_url = match.group(1)
        if match := LOGIN.search(line):
            user, password = match.group(1), match.group(2)
            break
    assert base_url and user and password, "standalone did not become ready:\n" + "".join(lines[-60:])
    stack = Standalone(process, base_url, user, password, home)
    stack.output = lines
    # Keep draining its output so the pipe never fills up.
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()  # type: ignore[arg-type]
    yield stack
    if process.poll() is None:  # a test failed before the SIGTERM test: still stop everything
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()


def test_prints_health_of_every_component(standalone):
    line = wait_until(
        lambda: next((line for line in standalone.output if "health:" in line), None),
        30,
        "no health line printed",
        interval=0.2,
    )
    for component in ("dag_processor", "metadatabase", "scheduler", "triggerer"):
        assert f"{component}=healthy" in line


def test_runs_the_kestra_scheduler_and_triggerer(standalone):
    commands = [" ".join(p.cmdline()) for p in standalone.descendants() if p.is_running()]
    for component in ("scheduler", "triggerer"):
        assert any(f"airflow kestra {component}" in command for command in commands), commands


@pytest.mark.parametrize(
    ("dag_id", "expected"),
    [
        ("kestra_bench_noop", "success"),
        ("kestra_bench_chain10", "success"),
        ("kestra_fan_out_in", "success"),
        ("kestra_retries_and_failure", "failed"),
    ],
)
def test_example_dag_runs(standalone, dag_id, expected):
    with standalone.client() as client:
        client.wait_for_dag(dag_id, timeout=120)
        run = client.trigger(dag_id)
        finished = client.wait_run(dag_id, run["dag_run_id"], timeout=180)
        assert finished["state"] == expected
        if dag_id == "kestra_retries_and_failure":
            states = {
                ti["task_id"]: (ti["state"], ti["try_number"])
                for ti in client.task_instances(dag_id, run["dag_run_id"])
            }
            assert states["flaky"] == ("success", 2)
            assert states["always_fails"] == ("failed", 2)
            assert states["cleanup"][0] == "success"
            assert states["publish"][0] == "upstream_failed"


def test_asset_event_triggers_consumer(standalone):
    with standalone.client() as client:
        client.wait_for_dag("kestra_asset_consumer", timeout=120)
        before = len(client.list_runs("kestra_asset_consumer"))
        run = client.trigger("kestra_asset_producer")
        assert client.wait_run("kestra_asset_producer", run["dag_run_id"], timeout=120)["state"] == "success"
        wait_until(
            lambda: len(client.list_runs("kestra_asset_consumer")) > before,
            120,
            "asset event did not trigger the consumer DAG",
        )
        consumer = client.list_runs("kestra_asset_consumer")[-1]
        assert (
            client.wait_run("kestra_asset_consumer", consumer["dag_run_id"], timeout=120)["state"]
            == "success"
        )


def test_kestra_status_page_requires_login_and_reports_the_queue(standalone):
    import httpx

    anonymous = httpx.get(f"{standalone.base_url}/kestra/api/v1/workers", timeout=30)
    assert anonymous.status_code == 401
    assert httpx.get(f"{standalone.base_url}/kestra/", timeout=30).status_code == 401
    with standalone.client() as client:
        workers = client.request("GET", "/kestra/api/v1/workers")
        latency = client.request("GET", "/kestra/api/v1/latency")
        queue = client.request("GET", "/kestra/api/v1/queue")
    assert workers["installed"] is True and queue["waiting"] >= 0
    assert any(worker["embedded"] and worker["badge"] == "healthy" for worker in workers["workers"])
    assert latency["run_latency"]["window"]["p50"] is not None  # the example runs above finished


def test_sigterm_stops_everything(standalone):
    children = standalone.descendants()
    postgres = psutil.Process(standalone.postgres_pid())
    assert children, "standalone started no child processes"
    watched = [*children, postgres, *postgres.children(recursive=True)]
    standalone.process.send_signal(signal.SIGTERM)
    standalone.process.wait(timeout=180)
    assert standalone.process.returncode == 0
    _, alive = psutil.wait_procs(watched, timeout=10)
    assert alive == [], f"left behind: {[(p.pid, p.name()) for p in alive]}"
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(str(standalone.home) in part for part in (p.info["cmdline"] or []))
    ]
    assert leftovers == []
