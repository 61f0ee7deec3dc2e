"""``airflow kestra scheduler`` on PostgreSQL, two replicas, against real Airflow components.

One stack for the module: api-server, dag-processor, triggerer, LocalExecutor and two
``airflow kestra scheduler`` replicas (every test here therefore also runs under HA).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.scheduler.notify import NotifyWaker
from airflow_kestra_provider.stack.processes import airflow_argv, run_airflow
from tests.integration.conftest import DAGS_EXAMPLES, wait_until
from tests.integration.due_dags_file import write_due_dags

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
DUE_DAGS = 300
CHANGING_V1 = """
from airflow.sdk import dag, task

@dag(dag_id="kestra_sched_changing", schedule=None, catchup=False)
def kestra_sched_changing():
    @task
    def first() -> None:
        return None
    first()

kestra_sched_changing()
"""
CHANGING_V2 = """
from airflow.sdk import dag, task

@dag(dag_id="kestra_sched_changing", schedule=None, catchup=False)
def kestra_sched_changing():
    @task
    def first() -> None:
        return None

    @task
    def second() -> None:
        return None

    first() >> second()

kestra_sched_changing()
"""


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sched_dags")
    for name in ("kestra_bench_noop.py", "kestra_bench_chain10.py"):
        shutil.copy(DAGS_EXAMPLES / name, folder / name)
    shutil.copy(HERE / "scheduler_dags" / "kestra_sched_assets.py", folder)
    (folder / "kestra_sched_changing.py").write_text(CHANGING_V1)
    return folder


@pytest.fixture(scope="module")
def stack(start_stack, dags_folder):
    stack = start_stack(
        scheduler_args=("kestra", "scheduler"),
        dags_folder=dags_folder,
        extra={"AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"},
    )
    stack.supervisor.start("scheduler-2", airflow_argv("kestra", "scheduler", "--skip-serve-logs"))
    return stack


def _run_and_wait(stack, dag_id: str, timeout: float = 120) -> dict:
    with stack.client() as client:
        client.wait_for_dag(dag_id, timeout=120)
        run = client.trigger(dag_id)
        return client.wait_run(dag_id, run["dag_run_id"], timeout=timeout)


def _ti_states(db, dag_id: str, run_id: str) -> dict[str, str]:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT task_id, state FROM task_instance WHERE dag_id = :d AND run_id = :r"),
            {"d": dag_id, "r": run_id},
        )
        return {task_id: state for task_id, state in rows}


def test_noop_dag_succeeds(stack, db):
    run = _run_and_wait(stack, "kestra_bench_noop")
    assert run["state"] == "success"
    assert _ti_states(db, "kestra_bench_noop", run["dag_run_id"]) == {"noop": "success"}
    stack.raise_if_dead()


def _wake_triggers(db) -> list[str]:
    with db.connect() as conn:
        return sorted(
            conn.execute(
                sa.text("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'airflow\\_kestra\\_wake\\_%'")
            ).scalars()
        )


def test_notify_triggers_installed_once_and_install_is_idempotent(stack, db):
    expected = [
        "airflow_kestra_wake_asset_queue",
        "airflow_kestra_wake_dag_run",
        "airflow_kestra_wake_task_instance",
        "airflow_kestra_wake_triggerer",
    ]
    assert _wake_triggers(db) == expected  # two replicas installed them: still one of each
    run_airflow(stack.env, "kestra", "notify-triggers")
    assert _wake_triggers(db) == expected


def test_queued_run_and_finished_task_send_a_wake_up(stack, db):
    waker = NotifyWaker(db)
    try:
        waker.wait(0.01)  # connect and LISTEN
        while waker.wait(0.2):  # drop what is pending
            pass
        waker.payloads.clear()
        with stack.client() as client:
            run = client.trigger("kestra_bench_noop")
            assert waker.wait(10.0), "no NOTIFY for a dag run queued through the REST API"
            client.wait_run("kestra_bench_noop", run["dag_run_id"], timeout=120)
        while waker.wait(0.5):
            pass
        # the run queued by the API, and its task finishing (reported through the Execution API)
        assert waker.payloads["dag_run:queued"] >= 1
        assert waker.payloads["task_instance:success"] >= 1
    finally:
        waker.close()


def test_chain_dag_succeeds_in_order(stack, db):
    run = _run_and_wait(stack, "kestra_bench_chain10", timeout=180)
    assert run["state"] == "success"
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT task_id, state, start_date, end_date FROM task_instance "
                "WHERE dag_id = 'kestra_bench_chain10' AND run_id = :r"
            ),
            {"r": run["dag_run_id"]},
        ).all()
    by_task = {r.task_id: r for r in rows}
    assert {r.state for r in rows} == {"success"} and len(rows) == 10
    for i in range(1, 10):
        assert by_task[f"link_{i}"].start_date >= by_task[f"link_{i - 1}"].end_date


def test_asset_event_triggers_consumer_once(stack, db):
    with stack.client() as client:
        client.wait_for_dag("kestra_sched_consumer", timeout=120)
    producer = _run_and_wait(stack, "kestra_sched_producer")
    assert producer["state"] == "success"

    def consumer_runs() -> list[sa.Row]:
        with db.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = 'kestra_sched_consumer'"
                    )
                ).all()
            )

    def finished_runs() -> list[sa.Row] | None:
        runs = consumer_runs()
        return runs if runs and all(r.state in ("success", "failed") for r in runs) else None

    runs = wait_until(finished_runs, 120, lambda: f"consumer runs not finished: {consumer_runs()}")
    assert [(r.run_type, r.state) for r in runs] == [("asset_triggered", "success")]
    with db.connect() as conn:
        queued = conn.execute(sa.text("SELECT count(*) FROM asset_dag_run_queue")).scalar()
    assert queued == 0


def test_dag_changed_while_cached_runs_new_version(stack, db, dags_folder):
    first = _run_and_wait(stack, "kestra_sched_changing")
    assert _ti_states(db, "kestra_sched_changing", first["dag_run_id"]) == {"first": "success"}

    (dags_folder / "kestra_sched_changing.py").write_text(CHANGING_V2)
    with stack.client() as client:
        token = client.get_dag("kestra_sched_changing")["file_token"]
        client.request("PUT", f"/api/v2/parseDagFile/{token}")

    def versions() -> int:
        with db.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM dag_version WHERE dag_id = 'kestra_sched_changing'")
                ).scalar_one()
            )

    wait_until(lambda: versions() >= 2, 120, "the changed DAG was not re-parsed")

    second = _run_and_wait(stack, "kestra_sched_changing")
    assert second["state"] == "success"
    assert _ti_states(db, "kestra_sched_changing", second["dag_run_id"]) == {
        "first": "success",
        "second": "success",
    }


def test_many_due_dags_get_exactly_one_run_each_with_two_replicas(stack, db, dags_folder):
    write_due_dags(dags_folder, DUE_DAGS, prefix="kestra_due")

    def parsed_and_with_runs() -> tuple[int, int]:
        with db.connect() as conn:
            parsed, with_runs = conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM dag WHERE dag_id LIKE 'kestra\\_due\\_%'),"
                    " (SELECT count(DISTINCT dag_id) FROM dag_run WHERE dag_id LIKE 'kestra\\_due\\_%')"
                )
            ).one()
        return int(parsed), int(with_runs)

    wait_until(
        lambda: parsed_and_with_runs() == (DUE_DAGS, DUE_DAGS),
        300,
        lambda: "{} parsed, {} with runs".format(*parsed_and_with_runs()),
        interval=1.0,
        stack=stack,
    )
    time.sleep(3)  # give a duplicate, if any scheduler were to create one, time to appear
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT dag_id, logical_date, run_type, count(*) AS n FROM dag_run "
                "WHERE dag_id LIKE 'kestra\\_due\\_%' GROUP BY dag_id, logical_date, run_type"
            )
        ).all()
        per_dag = conn.execute(
            sa.text(
                "SELECT count(*) FROM dag_run WHERE dag_id LIKE 'kestra\\_due\\_%' GROUP BY dag_id "
                "HAVING count(*) > 1"
            )
        ).all()
    assert all(r.n == 1 and r.run_type == "scheduled" for r in rows)
    # Midnight UTC may pass during the test and legitimately add a second daily run.
    assert not per_dag or len({r.logical_date for r in rows}) == 2
    stack.raise_if_dead()
