"""Two ``airflow kestra scheduler`` replicas and three ``airflow kestra worker`` processes on one
database (embedded workers off), under load; then one scheduler is SIGKILLed mid-load.

Checked in the database and in the marks file the tasks write: no dag run created twice (a
catch-up DAG both schedulers create runs for at once), no workload claimed or run twice, every
run succeeds on its first try, and the killed scheduler's workloads are taken over by the other
within ``[scheduler] scheduler_health_check_threshold`` plus the reap interval.
"""

from __future__ import annotations

import datetime
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
    trigger,
    wait_runs_terminal,
    write_mark_dag,
)

pytestmark = pytest.mark.integration

HEALTH_CHECK_THRESHOLD = 10  # seconds a scheduler job may be silent before it counts as gone
HEARTBEAT = 1  # the schedulers' and workers' heartbeats, seconds: the executors reap this often
# a reaper acts only once connected this long (so a reconnecting scheduler never takes over live
# peers): here shorter than the default 30 s, as the schedulers of the test are young
WORKER_TIMEOUT = 10
CATCHUP_DAG_ID = "kestra_test_ha_catchup"
CATCHUP_RUNS = 24
RUNS = 24

CATCHUP_DAG = """
import datetime

from airflow.sdk import dag, task

START = datetime.datetime.fromisoformat("{start}")


@dag(
    dag_id="{dag_id}",
    schedule="@hourly",
    start_date=START,
    end_date=START + datetime.timedelta(hours={runs} - 1),
    catchup=True,
    max_active_runs=64,
)
def kestra_test_ha_catchup():
    @task
    def noop():
        return None

    noop()


kestra_test_ha_catchup()
"""


def write_catchup_dag(folder: Path) -> None:
    """An hourly DAG with exactly CATCHUP_RUNS runs due, all in the past (fixed dates)."""
    start = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
    start -= datetime.timedelta(hours=CATCHUP_RUNS + 1)
    (folder / f"{CATCHUP_DAG_ID}.py").write_text(
        CATCHUP_DAG.format(start=start.isoformat(), dag_id=CATCHUP_DAG_ID, runs=CATCHUP_RUNS)
    )


@pytest.fixture(scope="module")
def marks(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ha_marks") / "marks.txt"


@pytest.fixture(scope="module")
def stack(start_stack, tmp_path_factory, marks):
    dags = tmp_path_factory.mktemp("ha_dags")
    write_mark_dag(dags, marks, retries=0)
    write_catchup_dag(dags)
    stack = start_stack(
        executor=KESTRA_EXECUTOR,
        scheduler_args=("kestra", "scheduler"),
        dags_folder=dags,
        extra={
            "AIRFLOW__KESTRA__EMBEDDED_WORKER": "False",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "AIRFLOW__KESTRA__WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": str(HEARTBEAT),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_THRESHOLD),
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    stack.supervisor.start("scheduler-2", airflow_argv("kestra", "scheduler", "--skip-serve-logs"))
    for n in (1, 2, 3):
        stack.supervisor.start(
            f"kestra-worker-{n}",
            airflow_argv(
                "kestra", "worker", "--concurrency", "4", "--name", f"kestra-worker-{n}", "--skip-serve-logs"
            ),
        )
    with stack.client() as client:
        client.wait_for_dag(MARK_DAG_ID, timeout=180)
    return stack


def running_scheduler_jobs(db) -> dict[int, float]:
    """``{job id: seconds since its heartbeat}`` of the scheduler jobs marked running."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, extract(epoch FROM now() - latest_heartbeat) FROM job"
                " WHERE job_type = 'SchedulerJob' AND state = 'running'"
            )
        ).all()
    return {int(r[0]): float(r[1]) for r in rows}


def open_rows_of(db, job_id: int) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM kestra_workload WHERE job_id = :j AND reported_at IS NULL"),
                {"j": job_id},
            ).scalar_one()
        )


def test_two_schedulers_share_the_load_and_one_killed_loses_nothing(stack, db, marks):
    wait_until(
        lambda: len(running_scheduler_jobs(db)) == 2, 120, "two scheduler jobs are not running", stack=stack
    )
    trigger(stack, MARK_DAG_ID, RUNS, {"sleep": 3})

    # both schedulers have queued work not yet reported; then the first one (the stack's) dies
    def open_rows_by_job() -> dict[int, int] | None:
        with db.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT job_id, count(*) FROM kestra_workload WHERE reported_at IS NULL GROUP BY job_id"
                )
            ).all()
        found = {int(job): int(n) for job, n in rows if job is not None}
        return found if len(found) == 2 else None

    wait_until(open_rows_by_job, 120, "both schedulers did not queue work at once", interval=0.2, stack=stack)
    victim = component(stack.supervisor, "scheduler")
    assert victim.process is not None
    kill_tree(victim.process.pid)
    victim.process.wait(10)
    stack.supervisor.components.remove(victim)
    killed_at = time.monotonic()

    # the killed job is the one whose heartbeat stopped
    def silent_job() -> int | None:
        jobs = running_scheduler_jobs(db)
        silent = [job for job, age in jobs.items() if age > 3 * HEARTBEAT + 2]
        return silent[0] if len(silent) == 1 and len(jobs) == 2 else None

    victim_job = wait_until(silent_job, 30, lambda: f"no silent scheduler job: {running_scheduler_jobs(db)}")
    orphaned = open_rows_of(db, victim_job)
    assert orphaned > 0, "the killed scheduler left nothing to take over"
    # taken over at the survivor's first reap after the threshold (and after its own first
    # WORKER_TIMEOUT seconds connected): a bound, not a speed goal
    wait_until(
        lambda: open_rows_of(db, victim_job) == 0,
        HEALTH_CHECK_THRESHOLD + WORKER_TIMEOUT + 30,
        lambda: f"{open_rows_of(db, victim_job)} workloads of the killed scheduler job {victim_job} left",
        stack=stack,
    )
    taken_over_after = time.monotonic() - killed_at

    states = wait_runs_terminal(stack, db, MARK_DAG_ID, RUNS, timeout=300)
    catchup = wait_runs_terminal(stack, db, CATCHUP_DAG_ID, CATCHUP_RUNS, timeout=300)
    assert states == {"success": RUNS}
    assert catchup == {"success": CATCHUP_RUNS}
    assert open_task_instances(db) == 0
    assert_each_try_ran_at_most_once(marks)
    assert_successes_ran(db, MARK_DAG_ID, marks)
    with db.connect() as conn:
        retried = conn.execute(
            sa.text("SELECT count(*) FROM task_instance WHERE try_number > 1")
        ).scalar_one()
        run_twice = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT ti_id, try_number FROM kestra_workload"
                " WHERE result IN ('success', 'failed') GROUP BY 1, 2 HAVING count(*) > 1) AS d"
            )
        ).scalar_one()
        catchup_dates = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT logical_date) FROM dag_run WHERE dag_id = :d"),
            {"d": CATCHUP_DAG_ID},
        ).one()
        victim_rows_left = conn.execute(
            sa.text("SELECT count(*) FROM kestra_workload WHERE job_id = :j AND reported_at IS NULL"),
            {"j": victim_job},
        ).scalar_one()
    assert retried == 0, "a try failed or was retried"
    assert run_twice == 0, "a task instance try ended twice"
    assert tuple(catchup_dates) == (CATCHUP_RUNS, CATCHUP_RUNS), "a catch-up run was created twice"
    assert victim_rows_left == 0
    print(
        f"killed scheduler job {victim_job} with {orphaned} unreported workloads; all taken over "
        f"{taken_over_after:.1f}s after the kill (health check threshold {HEALTH_CHECK_THRESHOLD}s)"
    )
