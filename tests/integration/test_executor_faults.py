"""Faults as they happen to remote workers: a worker's own pid killed, a runner killed, a worker
frozen past its timeout, a drain longer than the timeout, a worker killed under load.

One stack for the module: KestraExecutor with the embedded worker off, so only the
``airflow kestra worker`` processes each test starts run tasks. Tasks of ``kestra_test_mark``
(retries=1) write a start and an end mark with their pid, so a try that ran twice, or two tries
that overlapped, show in the marks file whatever the database says.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.processes import Component, airflow_argv
from tests.integration.conftest import wait_until
from tests.integration.reliability import (
    MARK_DAG_ID,
    assert_each_try_ran_at_most_once,
    assert_successes_ran,
    open_task_instances,
    trigger,
    write_mark_dag,
)

pytestmark = pytest.mark.integration

WORKER_TIMEOUT = 10
HEARTBEAT = 1


@pytest.fixture(scope="module")
def marks(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault_marks") / "marks.txt"


@pytest.fixture(scope="module")
def stack(start_stack, tmp_path_factory, marks):
    dags = tmp_path_factory.mktemp("fault_dags")
    write_mark_dag(dags, marks, retries=1)
    stack = start_stack(
        executor=KESTRA_EXECUTOR,
        dags_folder=dags,
        extra={
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__KESTRA__EMBEDDED_WORKER": "False",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "AIRFLOW__KESTRA__WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    with stack.client() as client:
        client.wait_for_dag(MARK_DAG_ID, timeout=180)
    return stack


def start_worker(stack, db, name: str, concurrency: int = 2) -> tuple[Component, str]:
    worker = stack.supervisor.start(
        name,
        airflow_argv(
            "kestra", "worker", "--concurrency", str(concurrency), "--name", name, "--skip-serve-logs"
        ),
    )
    assert worker.process is not None
    pid = worker.process.pid

    def registered() -> object:
        with db.connect() as conn:
            return conn.execute(
                sa.text("SELECT id FROM kestra_worker WHERE pid = :p AND state = 'running'"), {"p": pid}
            ).scalar()

    return worker, str(wait_until(registered, 120, f"worker {name} did not register", stack=stack))


def stop_worker(stack, worker: Component) -> None:
    if worker.process is not None and worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        worker.process.wait(90)
    stack.supervisor.components.remove(worker)


def started(marks: Path, run_ids: set[str]) -> dict[tuple[str, str, int], int]:
    """``{(run_id, task_id, try): pid}`` of the tries of ``run_ids`` that began."""
    found = {}
    if marks.exists():
        for line in marks.read_text().splitlines():
            kind, run_id, task_id, try_number, pid = line.split()
            if kind == "start" and run_id in run_ids:
                found[(run_id, task_id, int(try_number))] = int(pid)
    return found


def run_states(db, run_ids: list[str]) -> dict[str, str]:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, state FROM dag_run WHERE run_id = ANY(:r)"), {"r": run_ids}
        ).all()
    return dict(rows)


def wait_terminal(stack, db, run_ids: list[str], timeout: float) -> dict[str, str]:
    states: dict[str, str] = {}

    def done() -> bool:
        nonlocal states
        states = run_states(db, run_ids)
        return len(states) == len(run_ids) and set(states.values()) <= {"success", "failed"}

    wait_until(done, timeout, lambda: f"runs not terminal: {states}", interval=0.5, stack=stack)
    return states


def ti_of(db, run_id: str, task_id: str = "first") -> tuple[str, int]:
    with db.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT state, try_number FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            ),
            {"d": MARK_DAG_ID, "r": run_id, "t": task_id},
        ).one()
    return str(row[0]), int(row[1])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def check_clean(db, marks: Path) -> None:
    assert open_task_instances(db) == 0
    assert_each_try_ran_at_most_once(marks)
    assert_successes_ran(db, MARK_DAG_ID, marks)


def test_sigkill_of_the_worker_pid_alone_leaves_no_process_and_retries_the_task(stack, db, marks):
    worker, _ = start_worker(stack, db, "fault-kill-pid")
    [run_id] = trigger(stack, MARK_DAG_ID, 1, {"sleep": 30, "retry_sleep": 0, "second_sleep": 0})
    key = (run_id, "first", 1)
    task_pid = wait_until(lambda: started(marks, {run_id}).get(key), 120, "the task never started", 0.2)
    assert worker.process is not None
    tree = [p.pid for p in psutil.Process(worker.process.pid).children(recursive=True)]
    assert task_pid in tree
    helper, _ = start_worker(stack, db, "fault-kill-pid-helper")  # runs the retry
    worker.process.send_signal(signal.SIGKILL)  # the worker's own pid, nothing else
    worker.process.wait(10)
    killed_at = time.monotonic()
    stack.supervisor.components.remove(worker)
    wait_until(lambda: all(gone(pid) for pid in tree), 60, lambda: [p for p in tree if not gone(p)])
    # Its task instance fails (its heartbeat stops with it) and is retried, as try 2, elsewhere.
    wait_until(lambda: ti_of(db, run_id)[1] == 2, WORKER_TIMEOUT + 30, lambda: str(ti_of(db, run_id)))
    retried_after = time.monotonic() - killed_at
    print(f"try 2 queued {retried_after:.1f}s after the worker's SIGKILL")
    assert wait_terminal(stack, db, [run_id], 240) == {run_id: "success"}
    assert ti_of(db, run_id) == ("success", 2)
    check_clean(db, marks)
    stop_worker(stack, helper)


def test_kill_of_a_runner_never_lets_two_tries_overlap(stack, db, marks):
    worker, _ = start_worker(stack, db, "fault-runner")
    [run_id] = trigger(stack, MARK_DAG_ID, 1, {"sleep": 30, "retry_sleep": 0, "second_sleep": 0})
    key = (run_id, "first", 1)
    task_pid = wait_until(lambda: started(marks, {run_id}).get(key), 120, "the task never started", 0.2)
    runner = psutil.Process(task_pid).parent()
    assert worker.process is not None and runner is not None
    assert runner.pid in [p.pid for p in psutil.Process(worker.process.pid).children(recursive=True)]
    runner.send_signal(signal.SIGKILL)
    # The task process goes with its runner, before the try is reported failed and retried.
    wait_until(lambda: gone(task_pid), 10, "the task process outlived its runner")
    retry_pid = wait_until(
        lambda: started(marks, {run_id}).get((run_id, "first", 2)), 120, "no retry", 0.2, stack=stack
    )
    assert gone(task_pid), "try 2 started while try 1 still ran"
    assert retry_pid != task_pid
    assert wait_terminal(stack, db, [run_id], 240) == {run_id: "success"}
    check_clean(db, marks)
    stop_worker(stack, worker)


def test_a_worker_frozen_past_its_timeout_fences_itself(stack, db, marks):
    frozen, frozen_id = start_worker(stack, db, "fault-frozen")
    run_ids = trigger(stack, MARK_DAG_ID, 2, {"sleep": 25, "second_sleep": 0})
    wait_until(lambda: len(started(marks, set(run_ids))) == 2, 120, "tasks never started", 0.2, stack=stack)
    other, _ = start_worker(stack, db, "fault-other")
    assert frozen.process is not None
    os.kill(frozen.process.pid, signal.SIGSTOP)  # the worker freezes; its runners and tasks do not
    try:
        time.sleep(WORKER_TIMEOUT + 3 * HEARTBEAT + 5)
        with db.connect() as conn:
            state = conn.execute(
                sa.text("SELECT state FROM kestra_worker WHERE id = :i"), {"i": frozen_id}
            ).scalar()
        assert state == "dead"
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)

    def registered_anew() -> object:
        with db.connect() as conn:
            return conn.execute(
                sa.text("SELECT id FROM kestra_worker WHERE pid = :p AND state = 'running' AND id <> :old"),
                {"p": frozen.process.pid, "old": frozen_id},  # type: ignore[union-attr]
            ).scalar()

    wait_until(registered_anew, 30, "the frozen worker did not register anew", stack=stack)
    # Its tasks kept heartbeating while it was frozen: they were not failed, it took them over.
    assert wait_terminal(stack, db, run_ids, 240) == dict.fromkeys(run_ids, "success")
    assert [ti_of(db, r) for r in run_ids] == [("success", 1)] * 2
    check_clean(db, marks)
    stop_worker(stack, frozen)
    stop_worker(stack, other)


def test_sigterm_drains_a_task_longer_than_the_timeout(stack, db, marks):
    worker, worker_id = start_worker(stack, db, "fault-drain")
    [run_id] = trigger(stack, MARK_DAG_ID, 1, {"sleep": WORKER_TIMEOUT + 10, "second_sleep": 0})
    wait_until(lambda: started(marks, {run_id}).get((run_id, "first", 1)), 120, "never started", 0.2)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 120

    def first_done() -> bool:
        return ti_of(db, run_id)[0] == "success" or time.monotonic() > deadline

    wait_until(first_done, 130, "the drained task did not end")
    assert ti_of(db, run_id) == ("success", 1)
    worker.process.wait(60)
    with db.connect() as conn:
        state = conn.execute(
            sa.text("SELECT state FROM kestra_worker WHERE id = :i"), {"i": worker_id}
        ).scalar()
    assert state == "stopped"  # heartbeating until the end: never declared dead
    stack.supervisor.components.remove(worker)
    # The second task of the run still needs a worker.
    helper, _ = start_worker(stack, db, "fault-drain-helper")
    assert wait_terminal(stack, db, [run_id], 120) == {run_id: "success"}
    check_clean(db, marks)
    stop_worker(stack, helper)


def test_sigkill_of_one_of_two_workers_under_load_fails_only_started_tries(stack, db, marks):
    victim, victim_id = start_worker(stack, db, "fault-load-victim", concurrency=4)
    survivor, _ = start_worker(stack, db, "fault-load-survivor", concurrency=4)
    run_ids: list[str] = []
    for _ in range(10):  # about 3 runs/s
        run_ids += trigger(stack, MARK_DAG_ID, 1, {"sleep": 2})
        time.sleep(0.33)

    def victim_started() -> list:
        with db.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT w.ti_id FROM kestra_workload w JOIN task_instance ti ON ti.id = w.ti_id "
                    "WHERE w.worker_id = :v AND w.finished_at IS NULL AND ti.state = 'running'"
                ),
                {"v": victim_id},
            ).all()

    wait_until(victim_started, 120, "the victim ran nothing", 0.1, stack=stack)
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.process.wait(10)
    stack.supervisor.components.remove(victim)
    run_ids += trigger(stack, MARK_DAG_ID, 5, {"sleep": 2})
    states = wait_terminal(stack, db, run_ids, 300)
    print(f"all terminal {time.monotonic() - killed_at:.0f}s after the kill: {states}")
    assert set(states.values()) == {"success"}
    with db.connect() as conn:
        # Earlier tries of these runs; a try the Execution API started has a start_date (a task
        # can be killed after its start and before its own code writes a start mark).
        never_started = conn.execute(
            sa.text(
                "SELECT h.run_id, h.task_id, h.try_number FROM task_instance_history h "
                "WHERE h.dag_id = :d AND h.run_id = ANY(:r) AND h.start_date IS NULL"
            ),
            {"d": MARK_DAG_ID, "r": run_ids},
        ).all()
    # A try that failed had started: nothing that never ran was failed.
    assert never_started == []
    check_clean(db, marks)
    stop_worker(stack, survivor)
