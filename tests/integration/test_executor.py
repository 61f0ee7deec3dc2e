"""KestraExecutor under the stock ``airflow scheduler`` against a real PostgreSQL.

One stack for the whole module (embedded worker on); later tests add ``airflow kestra worker``
processes and restart the scheduler on the same stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from tests.integration.conftest import DAGS_EXAMPLES, wait_until
from tests.integration.reliability import trigger, wait_runs_terminal

pytestmark = pytest.mark.integration

ENV_DUMP_DAG = """
import json
import os
from pathlib import Path

from airflow.sdk import dag, task


@dag(dag_id="kestra_test_env_dump", schedule=None, catchup=False)
def kestra_test_env_dump():
    @task
    def dump(**context):
        found = {"environ": dict(os.environ)}
        # the exec-time environment of this process and of its parent (the runner)
        for who in ("self", str(os.getppid())):
            found["proc/" + who] = Path(f"/proc/{who}/environ").read_bytes().decode(errors="replace")
        import gc

        import sqlalchemy
        from airflow.configuration import conf

        # every engine in the memory this process inherited (Airflow's supervisor blocks
        # settings.engine itself in a task, so look past it)
        found["engines"] = []
        for o in gc.get_objects():
            try:
                if isinstance(o, sqlalchemy.engine.Engine):
                    found["engines"].append(o.url.render_as_string(hide_password=False))
            except Exception as err:
                found["engines"].append(repr(err))
        found["conf_db"] = conf.get("database", "sql_alchemy_conn", fallback="")
        found["conf_jwt"] = conf.get("api_auth", "jwt_secret", fallback="")
        found["conf_secret_key"] = conf.get("api", "secret_key", fallback="")
        with open(context["dag_run"].conf["path"], "w") as out:
            json.dump(found, out)

    dump()


kestra_test_env_dump()
"""

SLEEPER_DAG = """
import os
import time

from airflow.sdk import dag, task


@dag(dag_id="kestra_test_sleeper", schedule=None, catchup=False, default_args={"retries": 0})
def kestra_test_sleeper():
    @task
    def sleep(**context):
        with open(context["dag_run"].conf["pid_file"], "w") as out:
            out.write(str(os.getpid()))
        time.sleep(120)

    sleep()


kestra_test_sleeper()
"""

SECRET_NAMES = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
)


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("executor_dags")
    for name in ("kestra_bench_noop.py", "kestra_bench_chain10.py"):
        shutil.copy(DAGS_EXAMPLES / name, folder / name)
    (folder / "kestra_test_env_dump.py").write_text(ENV_DUMP_DAG)
    (folder / "kestra_test_sleeper.py").write_text(SLEEPER_DAG)
    return folder


@pytest.fixture(scope="module")
def stack(start_stack, dags_folder):
    stack = start_stack(
        executor=KESTRA_EXECUTOR,
        dags_folder=dags_folder,
        extra={
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__KESTRA__WORKER_TIMEOUT": "10",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    with stack.client() as client:
        for dag_id in (
            "kestra_bench_noop",
            "kestra_bench_chain10",
            "kestra_test_env_dump",
            "kestra_test_sleeper",
        ):
            client.wait_for_dag(dag_id, timeout=180)
    return stack


def claim_states(db) -> dict[str, int]:
    with db.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "SELECT coalesce(result, 'open'), count(*) FROM kestra_workload "
                    "WHERE claimed_at IS NOT NULL GROUP BY 1"
                )
            ).all()
        )


def assert_nothing_ran_twice(db) -> None:
    with db.connect() as conn:
        retried = conn.execute(sa.text("SELECT count(*) FROM task_instance WHERE try_number > 1")).scalar()
        history = conn.execute(sa.text("SELECT count(*) FROM task_instance_history")).scalar()
        claims_per_try = conn.execute(
            sa.text(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM kestra_workload "
                "WHERE result IN ('success', 'failed') GROUP BY ti_id) AS c"
            )
        ).scalar()
    assert retried == 0
    assert history == 0
    assert claims_per_try in (None, 1)


NOOP_RUNS = 40
CHAIN_RUNS = 4  # of kestra_bench_chain10
SHARED_RUNS = 50  # no-op runs the embedded and two remote workers share


def test_noop_and_chain_runs_succeed(stack, db):
    tis = NOOP_RUNS + 10 * CHAIN_RUNS
    trigger(stack, "kestra_bench_noop", NOOP_RUNS)
    trigger(stack, "kestra_bench_chain10", CHAIN_RUNS)
    assert wait_runs_terminal(stack, db, "kestra_bench_noop", NOOP_RUNS, timeout=600, check_dead=True) == {
        "success": NOOP_RUNS
    }
    assert wait_runs_terminal(
        stack, db, "kestra_bench_chain10", CHAIN_RUNS, timeout=600, check_dead=True
    ) == {"success": CHAIN_RUNS}
    # A run is done once its task reported success; its runner finishes (logs) a moment later.
    wait_until(lambda: "open" not in claim_states(db), 60, lambda: f"claims open: {claim_states(db)}")
    assert claim_states(db) == {"success": tis}
    with db.connect() as conn:
        states = dict(conn.execute(sa.text("SELECT state, count(*) FROM task_instance GROUP BY state")).all())
    assert states == {"success": tis}
    assert_nothing_ran_twice(db)
    # The start call counts as the first heartbeat (worker/supervisor_tuning.py): stock's
    # supervisor sends one more at once, i.e. one per task here; ours only for a task that
    # outlives [workers] min_heartbeat_interval (a very slow machine).
    api_log = (stack.supervisor.log_dir / "api-server.log").read_text()
    heartbeats = len(re.findall(r"method=PUT path=/execution/task-instances/\S+/heartbeat", api_log))
    starts = len(re.findall(r"method=PATCH path=/execution/task-instances/\S+/run", api_log))
    assert starts >= tis  # the access log has the Execution API's requests
    print(f"Execution API: {heartbeats} heartbeats for {starts} starts")
    assert heartbeats < tis / 2, f"{heartbeats} heartbeats for {tis} no-op task instances"


def test_task_environment_has_no_secrets(stack, db, tmp_path):
    path = tmp_path / "env.json"
    trigger(stack, "kestra_test_env_dump", 1, {"path": str(path)})
    assert wait_runs_terminal(stack, db, "kestra_test_env_dump", 1, timeout=120, check_dead=True) == {
        "success": 1
    }
    found = json.loads(path.read_text())
    assert "AIRFLOW_HOME" in found["environ"]  # the dump is real
    # (/proc/<pid>/environ of the task and its runner may read as NUL bytes: setproctitle
    # reuses that memory for the process title. The unit test checks it without a title.)
    assert {"proc/self", "engines", "conf_db", "conf_jwt"} <= set(found)
    text = json.dumps(found)
    leaked = [name for name in SECRET_NAMES if stack.env[name] in text]
    assert leaked == [], f"the task could read {leaked}"


def test_killed_task_process_fails_within_seconds(stack, db, tmp_path):
    pid_file = tmp_path / "pid"
    trigger(stack, "kestra_test_sleeper", 1, {"pid_file": str(pid_file)})
    pid = wait_until(lambda: pid_file.exists() and pid_file.read_text(), 120, "the task never started", 0.2)
    killed_at = time.monotonic()
    os.kill(int(pid), signal.SIGKILL)
    assert wait_runs_terminal(stack, db, "kestra_test_sleeper", 1, timeout=60, check_dead=True) == {
        "failed": 1
    }
    took = time.monotonic() - killed_at
    with db.connect() as conn:
        ti_states = (
            conn.execute(sa.text("SELECT state FROM task_instance WHERE dag_id = 'kestra_test_sleeper'"))
            .scalars()
            .all()
        )
        open_tis = conn.execute(
            sa.text("SELECT count(*) FROM task_instance WHERE state IN ('queued', 'running')")
        ).scalar()
    assert ti_states == ["failed"]
    assert open_tis == 0
    assert took < 30, f"failure noticed after {took:.1f}s"


def test_two_worker_processes_never_claim_the_same_ti(stack, db):
    with db.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM kestra_workload")).scalar()
    for n in (1, 2):
        stack.supervisor.start(
            f"kestra-worker-{n}",
            airflow_argv(
                "kestra", "worker", "--concurrency", "8", "--name", f"kestra-worker-{n}", "--skip-serve-logs"
            ),
        )

    def remote_workers_running() -> int:
        with db.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM kestra_worker WHERE state = 'running' AND NOT embedded")
                ).scalar_one()
            )

    wait_until(lambda: remote_workers_running() == 2, 120, "the worker processes did not register")
    trigger(stack, "kestra_bench_noop", SHARED_RUNS)
    noop_runs = NOOP_RUNS + SHARED_RUNS  # with those of test_noop_and_chain_runs_succeed
    assert wait_runs_terminal(stack, db, "kestra_bench_noop", noop_runs, timeout=600, check_dead=True) == {
        "success": noop_runs
    }
    with db.connect() as conn:
        per_worker = dict(
            conn.execute(
                sa.text(
                    "SELECT w.embedded, count(DISTINCT c.worker_id) FROM kestra_workload c "
                    "JOIN kestra_worker w ON w.id = c.worker_id WHERE c.dag_id = 'kestra_bench_noop' "
                    "GROUP BY w.embedded"
                )
            ).all()
        )
        total = conn.execute(sa.text("SELECT count(*) FROM kestra_workload")).scalar()
    assert total == before + SHARED_RUNS
    assert per_worker.get(False) == 2, per_worker  # both remote workers claimed some
    assert_nothing_ran_twice(db)


def test_scheduler_restart_mid_load(stack, db):
    trigger(stack, "kestra_bench_chain10", 10)
    time.sleep(3)
    scheduler = next(c for c in stack.supervisor.components if c.name == "scheduler")
    assert scheduler.process is not None
    # SIGTERM to the scheduler alone (a service manager's graceful stop): it stops claiming,
    # drains its running tasks and exits; queued ones wait for the next scheduler.
    scheduler.process.send_signal(signal.SIGTERM)
    try:
        scheduler.process.wait(90)
    except subprocess.TimeoutExpired:
        # The stock scheduler raises SystemExit from its signal handler; when the signal lands
        # inside a finalizer (seen: SQLAlchemy's InstanceState._cleanup) Python prints
        # "Exception ignored" and the scheduler loops on. The drain lasts at most 60 s, so a
        # scheduler still alive after 90 s lost the signal: send it again, as an operator would.
        scheduler.process.send_signal(signal.SIGTERM)
        scheduler.process.wait(90)
    stack.supervisor.components.remove(scheduler)
    if scheduler.log_file is not None:
        scheduler.log_file.close()
    stack.supervisor.start("scheduler", airflow_argv("scheduler"))
    chain_runs = CHAIN_RUNS + 10  # with those of test_noop_and_chain_runs_succeed
    assert wait_runs_terminal(
        stack, db, "kestra_bench_chain10", chain_runs, timeout=600, check_dead=True
    ) == {"success": chain_runs}
    with db.connect() as conn:
        open_tis = conn.execute(
            sa.text("SELECT count(*) FROM task_instance WHERE state IN ('queued', 'running', 'scheduled')")
        ).scalar()
    assert open_tis == 0
    assert_nothing_ran_twice(db)
