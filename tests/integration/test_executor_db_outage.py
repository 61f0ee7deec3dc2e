"""A 30-second database outage in the middle of a load, on a PostgreSQL server of this module's own.

The server is stopped (fast shutdown: every connection is cut) while tasks are running and queued,
kept down for 30 s, and started again on the same data directory and socket. An
``airflow kestra worker`` process must live through it (log, back off, retry); a component that
exits is restarted with the same command, as a service manager would. Afterwards every run is
terminal, nothing is left queued or running, and no task instance try ran twice (marks file).
The runners retry the Execution API for ``[kestra] execution_api_retry_window`` (default 120 s),
so every task that did its work ends ``success`` and every run succeeds.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres
from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, StackConfig, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from airflow_kestra_provider.stack.stack import AirflowStack
from tests.integration.reliability import (
    MARK_DAG_ID,
    assert_each_try_ran_at_most_once,
    assert_successes_ran,
    component,
    open_task_instances,
    read_marks,
    run_states,
    ti_rows,
    trigger,
    write_mark_dag,
)

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 30.0
RUNS = 30


def restart_dead_until_terminal(stack: AirflowStack, db: sa.Engine, runs: int, timeout: float) -> list[str]:
    """Restart every component that exited (never the worker) until all ``runs`` are terminal."""
    restarted: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        assert "kestra-worker" not in [c.name for c in stack.supervisor.dead()], stack.supervisor.log_tail(
            "kestra-worker"
        )
        restarted += stack.restart_dead()
        states: dict[str, int] = {}
        with contextlib.suppress(sa.exc.OperationalError):
            states = run_states(db, MARK_DAG_ID)
        if sum(states.values()) >= runs and set(states) <= {"success", "failed"}:
            return restarted
        assert time.monotonic() < deadline, f"runs not terminal after {timeout:.0f}s: {states}"
        time.sleep(1.0)


def assert_done_work_succeeded(tis: list[tuple[str, str, int, str | None]], marks: Path) -> None:
    """Every task instance try that did its work (start and end mark) is ``success``."""
    ended = read_marks(marks)["end"]
    wrong = [
        (run_id, task_id, try_number, state)
        for run_id, task_id, try_number, state in tis
        if ended[(run_id, task_id, try_number)] and state != "success"
    ]
    assert wrong == [], (
        f"{len(wrong)} task instance(s) did their work (start and end mark) but did not end "
        f"success; their state could not be recorded through the Execution API: {wrong}"
    )


class OutageStack:
    def __init__(self, stack: AirflowStack, postgres: EmbeddedPostgres, marks: Path) -> None:
        self.stack = stack
        self.postgres = postgres
        self.marks = marks


@pytest.fixture(scope="module")
def outage(tmp_path_factory) -> Iterator[OutageStack]:
    root = tmp_path_factory.mktemp("db_outage")
    marks = root / "marks.txt"
    dags = root / "dags"
    write_mark_dag(dags, marks)
    postgres = EmbeddedPostgres(root / "pg" / "data")
    url = postgres.start()
    config = StackConfig(
        home=root / "home",
        sql_alchemy_conn=url,
        dags_folder=dags,
        port=free_port(),
        executor=KESTRA_EXECUTOR,
        extra={
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__KESTRA__WORKER_CONCURRENCY": "4",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__KESTRA__WORKER_TIMEOUT": "10",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    stack = AirflowStack(config)
    holder = OutageStack(stack, postgres, marks)
    try:
        stack.start()
        stack.supervisor.start(
            "kestra-worker",
            airflow_argv(
                "kestra", "worker", "--concurrency", "4", "--name", "kestra-worker", "--skip-serve-logs"
            ),
        )
        with stack.client() as client:
            client.wait_for_dag(MARK_DAG_ID, timeout=180)
        yield holder
    finally:
        stack.stop()
        holder.postgres.stop()  # the server started again after the outage


def test_30s_database_outage_mid_load(outage):
    stack, marks = outage.stack, outage.marks
    url = stack.config.sql_alchemy_conn
    trigger(stack, MARK_DAG_ID, RUNS, {"sleep": 2})
    deadline = time.monotonic() + 300
    while sum(read_marks(marks)["start"].values()) < 6:
        stack.raise_if_dead()
        assert time.monotonic() < deadline, "the load never started"
        time.sleep(0.2)
    worker = component(stack.supervisor, "kestra-worker")
    assert worker.process is not None
    worker_pid = worker.process.pid

    outage.postgres.stop()
    down_at = time.monotonic()
    time.sleep(OUTAGE_SECONDS)
    died_during_outage = sorted(c.name for c in stack.supervisor.dead())
    outage.postgres = EmbeddedPostgres(outage.postgres.data_dir)
    assert outage.postgres.start() == url  # same data directory, same socket
    print(f"database down for {time.monotonic() - down_at:.1f}s; exited meanwhile: {died_during_outage}")

    # The worker process lives through the outage and retried with back-off meanwhile.
    assert "kestra-worker" not in died_during_outage
    assert worker.alive() and worker.process.pid == worker_pid
    # It noticed (a busy worker may not poll at all while its runners are full, so the
    # heartbeat is the thread sure to have hit the outage).
    worker_log = stack.supervisor.log_tail("kestra-worker", lines=100000)
    assert "heartbeat failed" in worker_log

    db = sa.create_engine(url)
    try:
        # Whatever exits (during the outage or while it recovers) is restarted with the same
        # command, as a service manager would; the worker process must never need that.
        restarted = restart_dead_until_terminal(stack, db, RUNS, timeout=600)
        states = run_states(db, MARK_DAG_ID)
        print(f"runs after the outage: {states}; restarted: {restarted}")
        assert sum(states.values()) == RUNS
        assert open_task_instances(db) == 0
        tis = ti_rows(db, MARK_DAG_ID)
        found = read_marks(marks)
        print(
            f"task instances: {dict(collections.Counter(state for *_, state in tis))}; "
            f"{sum(found['start'].values())} start and {sum(found['end'].values())} end marks"
        )
        assert len(tis) == 2 * RUNS
        assert {state for *_, state in tis} <= {"success", "failed", "upstream_failed"}
        starts = assert_each_try_ran_at_most_once(marks)
        assert_successes_ran(db, MARK_DAG_ID, marks)
        # Not lost: every task instance that did not run is failed or upstream_failed, none waits.
        ran = {(run_id, task_id) for run_id, task_id, _ in starts}
        assert all((run_id, task_id) in ran for run_id, task_id, _, state in tis if state == "success")
        # The runners retry the Execution API through the outage ([kestra]
        # execution_api_retry_window), so a task that did its work records its real state once
        # the database is back, and a task that was starting waits instead of failing.
        assert_done_work_succeeded(tis, marks)
        assert states == {"success": RUNS}, (
            f"every run should succeed after a {OUTAGE_SECONDS:.0f}s outage, got {states}; task "
            f"instances not successful: {[t for t in tis if t[3] != 'success']}"
        )
        deadline = time.monotonic() + 60  # a runner records its end a moment after the task's
        while True:
            with db.connect() as conn:
                open_claims = conn.execute(
                    sa.text("SELECT count(*) FROM kestra_workload WHERE finished_at IS NULL")
                ).scalar_one()
            if open_claims == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert open_claims == 0
    finally:
        db.dispose()
    assert worker.alive() and worker.process.pid == worker_pid
