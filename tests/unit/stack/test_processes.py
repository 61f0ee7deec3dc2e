"""Supervisor restart limit, with real (short-lived) subprocesses."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from airflow_kestra_provider.stack.environment import StackConfig
from airflow_kestra_provider.stack.processes import RestartLimitExceeded, Supervisor
from airflow_kestra_provider.stack.stack import AirflowStack, StackFailed

EXITS = [sys.executable, "-c", "print('exiting at once')"]


def _wait_exited(supervisor: Supervisor, name: str) -> None:
    component = next(c for c in supervisor.components if c.name == name)
    assert component.process is not None
    component.process.wait(30)


def test_restart_limit_counts_restarts_within_the_window(tmp_path: Path):
    supervisor = Supervisor({}, tmp_path, max_restarts=2, restart_window=60.0)
    try:
        supervisor.start("flaky", EXITS)
        for _ in range(2):
            _wait_exited(supervisor, "flaky")
            supervisor.restart("flaky")
        _wait_exited(supervisor, "flaky")
        with pytest.raises(RestartLimitExceeded, match="flaky exited 3 times within 60s") as raised:
            supervisor.restart("flaky")
        assert "exiting at once" in str(raised.value)  # the log tail
        assert [c.name for c in supervisor.dead()] == ["flaky"]  # left stopped
    finally:
        supervisor.stop_all()


def test_restarts_older_than_the_window_do_not_count(tmp_path: Path):
    supervisor = Supervisor({}, tmp_path, max_restarts=1, restart_window=0.5)
    try:
        supervisor.start("flaky", EXITS)
        _wait_exited(supervisor, "flaky")
        supervisor.restart("flaky")
        _wait_exited(supervisor, "flaky")
        with pytest.raises(RestartLimitExceeded):
            supervisor.restart("flaky")
        time.sleep(0.6)
        supervisor.restart("flaky")
        _wait_exited(supervisor, "flaky")
    finally:
        supervisor.stop_all()


def test_default_limit_is_five_restarts_in_five_minutes(tmp_path: Path):
    supervisor = Supervisor({}, tmp_path)
    assert (supervisor.max_restarts, supervisor.restart_window) == (5, 300.0)


def test_stack_restart_dead_restarts_then_fails_the_stack(tmp_path: Path):
    config = StackConfig(home=tmp_path, sql_alchemy_conn="postgresql://unused", dags_folder=tmp_path)
    stack = AirflowStack(config)
    stack.supervisor.max_restarts = 1
    try:
        stack.supervisor.start("scheduler", EXITS)
        _wait_exited(stack.supervisor, "scheduler")
        assert stack.restart_dead() == ["scheduler"]
        _wait_exited(stack.supervisor, "scheduler")
        with pytest.raises(StackFailed, match="scheduler exited 2 times within 300s"):
            stack.restart_dead()
    finally:
        stack.stop()


# Records the moment it gets SIGTERM into a file named after it, then exits.
RECORDS_SIGTERM = [
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "def done(*_):\n"
    "    open(sys.argv[1], 'w').write(repr(time.monotonic())); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, done)\n"
    "open(sys.argv[1] + '.up', 'w').close()\n"
    "time.sleep(60)\n",
]


def test_the_stack_stops_its_workers_before_the_components_they_report_to(tmp_path: Path):
    from airflow_kestra_provider.stack.engines import ProcessSpec

    marks = {name: tmp_path / name for name in ("api-server", "worker")}
    config = StackConfig(home=tmp_path, sql_alchemy_conn="postgresql://x/y", dags_folder=tmp_path)
    stack = AirflowStack(config, workers=[ProcessSpec("worker", (*RECORDS_SIGTERM, str(marks["worker"])))])
    stack.supervisor.start("api-server", [*RECORDS_SIGTERM, str(marks["api-server"])])
    stack.supervisor.start("worker", [*RECORDS_SIGTERM, str(marks["worker"])])
    deadline = time.monotonic() + 30
    while not all(Path(f"{mark}.up").exists() for mark in marks.values()):
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.05)
    stack.stop()
    assert stack.supervisor.components == []
    assert float(marks["worker"].read_text()) < float(marks["api-server"].read_text())
