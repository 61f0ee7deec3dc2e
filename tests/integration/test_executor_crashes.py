"""Crashes under load: SIGKILL of a whole ``airflow kestra worker``, then kill -9 of the scheduler.

One stack (KestraExecutor under the stock ``airflow scheduler``, embedded worker on) for the
module. Tasks of ``kestra_test_mark`` (retries=1) write a start and an end mark, so a try that ran
twice, or a task that never ran, shows in the marks file whatever the database says.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from tests.integration.conftest import wait_until
from tests.integration.reliability import (
    MARK_DAG_ID,
    assert_each_try_ran_at_most_once,
    assert_successes_ran,
    component,
    kill_tree,
    open_task_instances,
    read_marks,
    ti_rows,
    trigger,
    wait_runs_terminal,
    write_mark_dag,
)

pytestmark = pytest.mark.integration

WORKER_TIMEOUT = 10
# Runs of kestra_test_mark (two tasks each) in flight when a worker, then the scheduler, is
# killed: more than the six task slots of the three workers (two each), so some wait queued.
RUNS_AT_THE_WORKER_KILL = 8
RUNS_AT_THE_SCHEDULER_KILL = 6


@pytest.fixture(scope="module")
def marks(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crash_marks") / "marks.txt"


@pytest.fixture(scope="module")
def stack(start_stack, tmp_path_factory, marks):
    dags = tmp_path_factory.mktemp("crash_dags")
    write_mark_dag(dags, marks, retries=1)
    stack = start_stack(
        executor=KESTRA_EXECUTOR,
        dags_folder=dags,
        extra={
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__KESTRA__WORKER_CONCURRENCY": "2",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__KESTRA__WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    with stack.client() as client:
        client.wait_for_dag(MARK_DAG_ID, timeout=180)
    return stack


def open_claims(db, worker_id: str | None = None) -> list[tuple[str, str, int, str]]:
    """Unfinished claims ``(run_id, task_id, try_number, ti state)``, of one worker or all."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.run_id, c.task_id, c.try_number, ti.state FROM kestra_workload c "
                "JOIN task_instance ti ON ti.id = c.ti_id "
                "WHERE c.claimed_at IS NOT NULL AND c.finished_at IS NULL AND (CAST(:w AS text) IS NULL OR c.worker_id = :w)"
            ),
            {"w": worker_id},
        ).all()
    return [(r[0], r[1], int(r[2]), r[3]) for r in rows]


def worker_id_of(db, pid: int, timeout: float = 120) -> str:
    def running_row() -> object:
        with db.connect() as conn:
            return conn.execute(
                sa.text("SELECT id FROM kestra_worker WHERE pid = :p AND state = 'running'"), {"p": pid}
            ).scalar()

    return str(wait_until(running_row, timeout, f"no running worker row for pid {pid}"))


def started_not_ended(marks: Path) -> set[tuple[str, str, int]]:
    found = read_marks(marks)
    return {key for key in found["start"] if not found["end"][key]}


def check_end_state(stack, db, marks: Path, runs: int) -> dict[str, int]:
    states = wait_runs_terminal(stack, db, MARK_DAG_ID, runs, timeout=600)
    assert open_task_instances(db) == 0
    wait_until(lambda: not open_claims(db), 60, lambda: f"claims not finished: {open_claims(db)}")
    assert_each_try_ran_at_most_once(marks)
    assert_successes_ran(db, MARK_DAG_ID, marks)
    return states


def test_sigkill_of_a_whole_worker_mid_task(stack, db, marks):
    workers = [
        stack.supervisor.start(
            f"kestra-worker-{n}",
            airflow_argv(
                "kestra", "worker", "--concurrency", "2", "--name", f"kestra-worker-{n}", "--skip-serve-logs"
            ),
        )
        for n in (1, 2)
    ]
    victim = workers[0]
    assert victim.process is not None
    victim_id = worker_id_of(db, victim.process.pid)
    worker_id_of(db, workers[1].process.pid)  # type: ignore[union-attr]
    trigger(stack, MARK_DAG_ID, RUNS_AT_THE_WORKER_KILL, {"sleep": 6})

    def victim_running() -> list[tuple[str, str, int, str]]:
        running = [c for c in open_claims(db, victim_id) if c[3] == "running"]
        begun = started_not_ended(marks)
        return [c for c in running if c[:3] in begun]

    killed = wait_until(victim_running, 180, "the victim worker ran no task", interval=0.2, stack=stack)
    members = kill_tree(victim.process.pid)
    victim.process.wait(10)
    stack.supervisor.components.remove(victim)
    killed_at = time.monotonic()
    assert len(members) > 2, "the worker had no runner or task processes"

    states = check_end_state(stack, db, marks, RUNS_AT_THE_WORKER_KILL)
    took = time.monotonic() - killed_at
    print(
        f"runs {states}; killed tries {killed[:3]}...; all terminal {took:.0f}s after the kill (shared machine)"
    )
    with db.connect() as conn:
        victim_claims = dict(
            conn.execute(
                sa.text(
                    "SELECT coalesce(result, 'claimed'), count(*) FROM kestra_workload "
                    "WHERE worker_id = :w GROUP BY 1"
                ),
                {"w": victim_id},
            ).all()
        )
        victim_state = conn.execute(
            sa.text("SELECT state FROM kestra_worker WHERE id = :w"), {"w": victim_id}
        ).scalar()
    assert victim_state == "dead"
    assert victim_claims.get("claimed", 0) == 0
    # Each killed try was failed by the reaper, and retried (retries=1) as try 2, which ran once.
    tis = {
        (run_id, task_id): (try_number, state)
        for run_id, task_id, try_number, state in ti_rows(db, MARK_DAG_ID)
    }
    starts = read_marks(marks)["start"]
    for run_id, task_id, try_number, _ in killed:
        assert tis[(run_id, task_id)][0] == try_number + 1, (run_id, task_id, tis[(run_id, task_id)])
        assert starts[(run_id, task_id, try_number + 1)] == 1
    assert states == {"success": RUNS_AT_THE_WORKER_KILL}


def test_kill_9_of_the_scheduler_with_queued_and_running_tasks(stack, db, marks):
    # Only the embedded worker from here on: stop the remote one gracefully.
    for remote in [c for c in stack.supervisor.components if c.name.startswith("kestra-worker")]:
        assert remote.process is not None
        remote.process.send_signal(signal.SIGTERM)
        remote.process.wait(120)
        stack.supervisor.components.remove(remote)
    before = len(ti_rows(db, MARK_DAG_ID)) // 2
    earlier = started_not_ended(marks)  # the tries killed by the previous test
    trigger(stack, MARK_DAG_ID, RUNS_AT_THE_SCHEDULER_KILL, {"sleep": 5})

    def running_and_queued() -> tuple[set[tuple[str, str, int]], int] | None:
        with db.connect() as conn:
            queued = conn.execute(
                sa.text("SELECT count(*) FROM task_instance WHERE dag_id = :d AND state = 'queued'"),
                {"d": MARK_DAG_ID},
            ).scalar_one()
        begun = started_not_ended(marks) - earlier
        return (begun, queued) if begun and queued else None

    begun, queued = wait_until(
        running_and_queued, 180, "no running and queued task instances at once", interval=0.2, stack=stack
    )
    scheduler = component(stack.supervisor, "scheduler")
    assert scheduler.process is not None
    kill_tree(scheduler.process.pid)
    scheduler.process.wait(10)
    killed_at = time.monotonic()
    stack.supervisor.restart("scheduler")

    states = check_end_state(stack, db, marks, before + RUNS_AT_THE_SCHEDULER_KILL)
    print(
        f"runs {states}; at the kill {len(begun)} running, {queued} queued; "
        f"all terminal {time.monotonic() - killed_at:.0f}s after the kill (shared machine)"
    )
    assert states == {"success": before + RUNS_AT_THE_SCHEDULER_KILL}
    tis = {
        (run_id, task_id): (try_number, state)
        for run_id, task_id, try_number, state in ti_rows(db, MARK_DAG_ID)
    }
    found = read_marks(marks)
    starts = found["start"]
    for run_id, task_id, try_number in begun:
        if found["end"][(run_id, task_id, try_number)]:
            continue  # it finished its work between our look and the kill
        # killed mid-run with the scheduler: failed, then retried once as the next try
        assert tis[(run_id, task_id)] == (try_number + 1, "success")
        assert starts[(run_id, task_id, try_number + 1)] == 1
