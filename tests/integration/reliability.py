"""Helpers for the executor modules (``test_executor.py``, ``test_executor_*.py``).

Every task of the ``kestra_test_mark`` DAG appends one line to a marks file when it starts
(``start <run_id> <task_id> <try>``) and one when it ends (``end ...``): counting ``start`` lines
per task instance try counts real executions, whatever the database says.
"""

from __future__ import annotations

import collections
import contextlib
import signal
from pathlib import Path

import psutil
import sqlalchemy as sa

from airflow_kestra_provider.stack.processes import Component, Supervisor
from airflow_kestra_provider.stack.stack import AirflowStack
from tests.integration.conftest import wait_until

MARK_DAG_ID = "kestra_test_mark"

MARK_DAG = """
import datetime
import os
import time

from airflow.sdk import dag, task

MARKS = {marks!r}


def _mark(kind, ti):
    with open(MARKS, "a") as out:
        out.write(f"{{kind}} {{ti.run_id}} {{ti.task_id}} {{ti.try_number}} {{os.getpid()}}\\n")


def _sleep(context, key):
    # conf: "sleep" for every task and try; "second_sleep" for the second task, "retry_sleep"
    # for tries after the first, when given
    conf = context["dag_run"].conf
    seconds = conf.get(key, conf.get("sleep", 0))
    if context["ti"].try_number > 1:
        seconds = conf.get("retry_sleep", seconds)
    time.sleep(float(seconds))


@dag(
    dag_id="{dag_id}",
    schedule=None,
    catchup=False,
    max_active_runs=64,
    default_args={{"retries": {retries}, "retry_delay": datetime.timedelta(seconds=1)}},
)
def kestra_test_mark():
    @task
    def first(**context):
        _mark("start", context["ti"])
        _sleep(context, "sleep")
        _mark("end", context["ti"])

    @task
    def second(**context):
        _mark("start", context["ti"])
        _sleep(context, "second_sleep")
        _mark("end", context["ti"])

    first() >> second()


kestra_test_mark()
"""


def write_mark_dag(folder: Path, marks: Path, retries: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MARK_DAG_ID}.py").write_text(
        MARK_DAG.format(marks=str(marks), dag_id=MARK_DAG_ID, retries=retries)
    )


def read_marks(marks: Path) -> dict[str, collections.Counter[tuple[str, str, int]]]:
    """``{"start": Counter({(run_id, task_id, try): n}), "end": ...}``."""
    found: dict[str, collections.Counter[tuple[str, str, int]]] = {
        "start": collections.Counter(),
        "end": collections.Counter(),
    }
    if not marks.exists():
        return found
    for line in marks.read_text().splitlines():
        kind, run_id, task_id, try_number, _pid = line.split()
        found[kind][(run_id, task_id, int(try_number))] += 1
    return found


def run_states(db: sa.Engine, dag_id: str) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT state, count(*) FROM dag_run WHERE dag_id = :d GROUP BY state"), {"d": dag_id}
        ).all()
    return {state: count for state, count in rows}


def wait_runs_terminal(
    stack: AirflowStack, db: sa.Engine, dag_id: str, expected: int, timeout: float, check_dead: bool = True
) -> dict[str, int]:
    states: dict[str, int] = {}

    def terminal() -> bool:
        nonlocal states
        states = {}
        with contextlib.suppress(sa.exc.OperationalError):
            states = run_states(db, dag_id)
        return sum(states.values()) >= expected and set(states) <= {"success", "failed"}

    wait_until(
        terminal,
        timeout,
        lambda: f"{dag_id}: runs not terminal: {states}",
        interval=1.0,
        stack=stack if check_dead else None,
    )
    return states


def trigger(stack: AirflowStack, dag_id: str, count: int, conf: dict | None = None) -> list[str]:
    with stack.client() as client:
        return [client.trigger(dag_id, conf)["dag_run_id"] for _ in range(count)]


def ti_rows(db: sa.Engine, dag_id: str) -> list[tuple[str, str, int, str | None]]:
    """``(run_id, task_id, try_number, state)`` of every task instance of ``dag_id``."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, task_id, try_number, state FROM task_instance WHERE dag_id = :d"),
            {"d": dag_id},
        ).all()
    return [(r[0], r[1], int(r[2]), r[3]) for r in rows]


def open_task_instances(db: sa.Engine) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM task_instance WHERE state IN ('queued', 'running', 'scheduled')"
                )
            ).scalar_one()
        )


def assert_each_try_ran_at_most_once(marks: Path) -> collections.Counter[tuple[str, str, int]]:
    starts = read_marks(marks)["start"]
    twice = {key: n for key, n in starts.items() if n > 1}
    assert twice == {}, f"task instance tries that ran more than once: {twice}"
    return starts


def assert_successes_ran(db: sa.Engine, dag_id: str, marks: Path) -> None:
    """Every task instance the database calls successful really ran (start and end mark)."""
    found = read_marks(marks)
    for run_id, task_id, try_number, state in ti_rows(db, dag_id):
        if state == "success":
            key = (run_id, task_id, try_number)
            assert found["start"][key] == 1, f"{key} is success but started {found['start'][key]} times"
            assert found["end"][key] == 1, f"{key} is success but never ended"


def component(supervisor: Supervisor, name: str) -> Component:
    return next(c for c in supervisor.components if c.name == name)


def kill_tree(pid: int) -> list[psutil.Process]:
    """SIGKILL ``pid`` and every process under it at once, as when its machine or container dies.

    Airflow's task supervisor puts each task process in a process group of its own, so killing
    the worker's group alone would leave the tasks running as orphans."""
    root = psutil.Process(pid)
    members = [root, *root.children(recursive=True)]
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(members, timeout=10)
    assert alive == []
    return members
