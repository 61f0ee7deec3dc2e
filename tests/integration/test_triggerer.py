"""``airflow kestra triggerer`` with a second replica: no trigger runs on two triggerers at
once, and a triggerer killed with triggers running hands them to the other.

One stack (Kestra scheduler, KestraExecutor, Kestra triggerer) with short heartbeats. Deferred
tasks wait for a time given in their run's conf. First six runs defer while one triggerer runs;
a second ``airflow kestra triggerer`` starts and six more defer. Each trigger then has exactly
one owner and each deferred task exactly one trigger log (one triggerer ran it). The owner of
the first six is SIGKILLed (its own pid, as when the process dies: its trigger subprocess must
exit by itself); the other must own every trigger within the health check threshold plus the
reconcile interval, and every run must then succeed on its first try.
"""

from __future__ import annotations

import datetime
import signal
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from tests.integration.conftest import wait_until
from tests.integration.reliability import component

pytestmark = pytest.mark.integration

DAG_ID = "kestra_test_defer_until"
HEARTBEAT = 1  # seconds between the triggerers' heartbeats
HEALTH_CHECK_THRESHOLD = 6  # seconds a triggerer may be silent before its triggers are taken over
RECONCILE_INTERVAL = 1  # [kestra] triggerer_reconcile_interval
RUNS_PER_PHASE = 6
WAIT = 45  # seconds the deferred tasks wait: longer than both phases and the takeover

DEFER_DAG = f"""
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, catchup=False, max_active_runs=64)
def kestra_test_defer_until():
    @task
    def after() -> None:
        return None

    DateTimeSensorAsync(task_id="wait", target_time="{{{{ dag_run.conf['until'] }}}}") >> after()


kestra_test_defer_until()
"""

_TRIGGERS = sa.text(
    "SELECT ti.run_id, t.id, t.triggerer_id FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
    "WHERE ti.dag_id = :d AND ti.state = 'deferred'"
)
_TRIGGERER_JOBS = sa.text(
    "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' ORDER BY id"
)
_TIS = sa.text("SELECT run_id, task_id, state, try_number FROM task_instance WHERE dag_id = :d")


@pytest.fixture(scope="module")
def stack(start_stack, tmp_path_factory):
    dags = tmp_path_factory.mktemp("triggerer_dags")
    (dags / f"{DAG_ID}.py").write_text(DEFER_DAG)
    stack = start_stack(
        executor=KESTRA_EXECUTOR,
        scheduler_args=("kestra", "scheduler"),
        triggerer_args=("kestra", "triggerer"),
        dags_folder=dags,
        extra={
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(HEARTBEAT),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_THRESHOLD),
            "AIRFLOW__KESTRA__TRIGGERER_RECONCILE_INTERVAL": str(RECONCILE_INTERVAL),
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    with stack.client() as client:
        client.wait_for_dag(DAG_ID, timeout=180)
    return stack


def _deferred(db) -> dict[str, tuple[int, int | None]]:
    """``{run_id: (trigger id, owning triggerer job)}`` of the deferred sensors."""
    with db.connect() as conn:
        return {r.run_id: (r.id, r.triggerer_id) for r in conn.execute(_TRIGGERS, {"d": DAG_ID})}


def _trigger_runs(stack, phase: int, until: datetime.datetime) -> list[str]:
    run_ids = [f"phase{phase}_{n}" for n in range(RUNS_PER_PHASE)]
    with stack.client() as client:
        for run_id in run_ids:
            client.trigger(DAG_ID, conf={"until": until.isoformat()}, run_id=run_id)
    return run_ids


def _all_deferred_and_owned(db, run_ids: list[str]) -> dict[str, tuple[int, int | None]] | None:
    deferred = _deferred(db)
    if all(run_id in deferred and deferred[run_id][1] is not None for run_id in run_ids):
        return deferred
    return None


def _trigger_logs(stack, run_id: str) -> list[Path]:
    """The trigger log files of the run's sensor: one per triggerer that ran its trigger."""
    folder = stack.config.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=wait"
    return sorted(folder.glob("attempt=1.log.trigger.*.log"))


def _serves(process: psutil.Process) -> bool:
    """The triggerer's log server (a forked child like the trigger subprocess): it listens."""
    try:
        return any(c.status == psutil.CONN_LISTEN for c in process.net_connections(kind="tcp"))
    except psutil.NoSuchProcess:
        return False


def test_two_triggerers_never_run_one_trigger_twice_and_one_killed_hands_its_triggers_over(stack, db):
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=WAIT)
    first = _trigger_runs(stack, 1, until)
    owned = wait_until(
        lambda: _all_deferred_and_owned(db, first),
        90,
        lambda: f"not all deferred: {_deferred(db)}",
        stack=stack,
    )
    (victim_job,) = {owned[run_id][1] for run_id in first}

    stack.supervisor.start("triggerer-2", airflow_argv("kestra", "triggerer", "--skip-serve-logs"))
    with db.connect() as conn:
        wait_until(lambda: len(conn.execute(_TRIGGERER_JOBS).all()) == 2, 60, "second triggerer not running")
    second = _trigger_runs(stack, 2, until)
    owned = wait_until(
        lambda: _all_deferred_and_owned(db, first + second),
        90,
        lambda: f"not all deferred: {_deferred(db)}",
        stack=stack,
    )
    assert len({trigger_id for trigger_id, _ in owned.values()}) == len(first + second)
    # every trigger started on exactly one triggerer (each writes its own trigger log file)
    wait_until(
        lambda: all(_trigger_logs(stack, run_id) for run_id in first + second), 30, "trigger logs missing"
    )
    assert {run_id: len(_trigger_logs(stack, run_id)) for run_id in first + second} == dict.fromkeys(
        first + second, 1
    )

    victim = component(stack.supervisor, "triggerer")
    children = psutil.Process(victim.process.pid).children(recursive=True)
    victim.process.send_signal(signal.SIGKILL)  # the triggerer's own pid, not its tree
    killed_at = time.monotonic()
    try:
        # its trigger subprocess notices the lost supervisor and exits by itself
        _, alive = psutil.wait_procs([c for c in children if not _serves(c)], timeout=HEALTH_CHECK_THRESHOLD)
        assert alive == [], f"trigger subprocess of the killed triggerer still running: {alive}"
        wait_until(
            lambda: not any(job == victim_job for _, job in _deferred(db).values()),
            HEALTH_CHECK_THRESHOLD + RECONCILE_INTERVAL + 20,
            lambda: f"triggers still owned by the killed triggerer {victim_job}: {_deferred(db)}",
        )
        taken_over_after = time.monotonic() - killed_at
    finally:
        for child in children:  # the killed triggerer's log server, orphaned
            if child.is_running():
                child.kill()
    assert taken_over_after < HEALTH_CHECK_THRESHOLD + RECONCILE_INTERVAL + 20

    with stack.client() as client:
        for run_id in first + second:
            assert client.wait_run(DAG_ID, run_id, timeout=WAIT + 60)["state"] == "success", run_id
    with db.connect() as conn:
        tis = {(r.run_id, r.task_id): (r.state, r.try_number) for r in conn.execute(_TIS, {"d": DAG_ID})}
    expected = {(run_id, task): ("success", 1) for run_id in first + second for task in ("wait", "after")}
    assert tis == expected
    print(
        f"killed triggerer job {victim_job} owning {RUNS_PER_PHASE}+ triggers; all owned by the other "
        f"{taken_over_after:.1f}s after the kill (health check threshold {HEALTH_CHECK_THRESHOLD}s)"
    )
