"""The same DAGs under the stock ``airflow scheduler`` and ``airflow kestra scheduler``: same outcomes,
with each executor users pair a scheduler with.

Per executor (LocalExecutor; CeleryExecutor with a Celery worker and a broker of the test's own,
see stack/engines.py; EdgeExecutor with an Edge worker) two stacks, each on its own database of the embedded
PostgreSQL with api-server, dag-processor and triggerer; one runs the stock scheduler, the other
ours, and both are stopped before the next executor's pair starts. Both get
the DAGs of ``scheduler_dags/kestra_parity.py``: a daily cron DAG catching up three intervals,
a task that retries then fails, fan-out/fan-in with four trigger rules, dynamic task mapping, an
asset producer and its asset-scheduled consumer, and a manual run with conf. The same manual runs
are triggered on both; once every run is finished, the dag runs (type, logical date, data
interval, state, conf) and, per run, the task instances (task, map index, state, try number) must
be identical, and the executor under test must have run the tasks.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
MANUAL = {
    "parity_retries": None,
    "parity_fan": None,
    "parity_empty_hops": None,
    "parity_mapped": None,
    "parity_producer": None,
    "parity_conf": {"n": 5},
}
EXPECTED_RUNS = {"parity_cron": 3, "parity_consumer": 1, **dict.fromkeys(MANUAL, 1)}
RUN_ID = "parity__manual"
# The same on both schedulers: an idle Edge worker asks for jobs every second, not every 5 s.
QUICK = {"local": {}, "celery": {}, "edge": {"AIRFLOW__EDGE__JOB_POLL_INTERVAL": "1"}}
TIMEOUT = 200.0

_RUNS = sa.text(
    """
    SELECT id, dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
           state, conf, queued_at
    FROM dag_run WHERE dag_id LIKE 'parity\\_%' ORDER BY dag_id, logical_date, queued_at
    """
)
_TIS = sa.text(
    """
    SELECT dag_id, run_id, task_id, map_index, state, try_number
    FROM task_instance WHERE dag_id LIKE 'parity\\_%'
    """
)


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parity_dags")
    shutil.copy(HERE / "scheduler_dags" / "kestra_parity.py", folder)
    return folder


def _trigger_all(stack) -> None:
    with stack.client() as client:
        for dag_id in EXPECTED_RUNS:
            client.wait_for_dag(dag_id, timeout=120)
        client.unpause("parity_cron")
        for dag_id, conf in MANUAL.items():
            client.trigger(dag_id, conf=conf, run_id=RUN_ID)


def _finished(engine) -> bool:
    with engine.connect() as conn:
        runs = conn.execute(_RUNS).mappings().all()
    counts: dict[str, int] = {}
    for run in runs:
        if run["state"] not in ("success", "failed"):
            return False
        counts[run["dag_id"]] = counts.get(run["dag_id"], 0) + 1
    return counts == EXPECTED_RUNS


def _outcome(engine) -> dict[str, Any]:
    """Runs keyed by (dag_id, run_type, logical_date, n-th such run); TIs per run key."""
    with engine.connect() as conn:
        runs = conn.execute(_RUNS).mappings().all()
        tis = conn.execute(_TIS).mappings().all()
    keys: dict[tuple[str, str], tuple] = {}
    seen: dict[tuple, int] = {}
    out_runs = {}
    for run in runs:
        base = (run["dag_id"], run["run_type"], run["logical_date"])
        seen[base] = seen.get(base, 0) + 1
        key = (*base, seen[base])
        keys[(run["dag_id"], run["run_id"])] = key
        out_runs[key] = (
            run["data_interval_start"],
            run["data_interval_end"],
            run["state"],
            run["conf"],
        )
    out_tis: dict[tuple, set] = {key: set() for key in out_runs}
    for ti in tis:
        out_tis[keys[(ti["dag_id"], ti["run_id"])]].add(
            (ti["task_id"], ti["map_index"], ti["state"], ti["try_number"])
        )
    return {"runs": out_runs, "tis": out_tis}


def _ran_by(engine: str, db) -> int:
    """How many parity tries the executor's own worker ran, by the trace each executor leaves:
    a Celery task id on the task instance, a job row of the Edge executor (LocalExecutor leaves
    none: the tries started)."""
    query = {
        "local": "SELECT count(*) FROM task_instance WHERE dag_id LIKE 'parity\\_%' AND try_number > 0",
        "celery": "SELECT count(*) FROM task_instance WHERE dag_id LIKE 'parity\\_%'"
        " AND external_executor_id IS NOT NULL",
        "edge": "SELECT count(*) FROM edge_job WHERE dag_id LIKE 'parity\\_%'",
    }[engine]
    with db.connect() as conn:
        return int(conn.execute(sa.text(query)).scalar_one())


@pytest.fixture(scope="module", params=["local", "celery", "edge"])
def outcomes(request, start_stack, dags_folder):
    engine = request.param
    schedulers = {"stock": ("scheduler",), "kestra": ("kestra", "scheduler")}
    with ThreadPoolExecutor(len(schedulers)) as pool:  # both start side by side
        started = {
            name: pool.submit(
                start_stack, scheduler_args=args, dags_folder=dags_folder, engine=engine, extra=QUICK[engine]
            )
            for name, args in schedulers.items()
        }
        stacks = {name: future.result() for name, future in started.items()}
    engines = {name: sa.create_engine(stack.config.sql_alchemy_conn) for name, stack in stacks.items()}
    try:
        for stack in stacks.values():
            _trigger_all(stack)
        deadline = time.monotonic() + TIMEOUT
        pending = set(stacks)
        while pending and time.monotonic() < deadline:
            time.sleep(1.0)
            for name in list(pending):
                stacks[name].raise_if_dead()
                if _finished(engines[name]):
                    pending.discard(name)
        result = {name: _outcome(db) for name, db in engines.items()}
        result["pending"] = pending
        result["ran_by_engine"] = {name: _ran_by(engine, db) for name, db in engines.items()}
        yield result
    finally:
        for db in engines.values():
            db.dispose()
        for stack in stacks.values():  # the next executor's pair gets the machine to itself
            stack.stop()


def test_every_run_finished_on_both_stacks(outcomes):
    assert outcomes["pending"] == set(), {
        name: {k: v[2] for k, v in outcomes[name]["runs"].items()} for name in outcomes["pending"]
    }


def test_the_executor_under_test_ran_the_tasks(outcomes):
    assert all(count >= 10 for count in outcomes["ran_by_engine"].values()), outcomes["ran_by_engine"]


def test_same_dag_runs(outcomes):
    assert outcomes["kestra"]["runs"] == outcomes["stock"]["runs"]


def test_same_task_instances_per_run(outcomes):
    assert outcomes["kestra"]["tis"] == outcomes["stock"]["tis"]


def test_the_dags_did_what_they_are_for(outcomes):
    """Guards against two stacks agreeing on nothing happening: the expected outcome per DAG."""
    runs, tis = outcomes["kestra"]["runs"], outcomes["kestra"]["tis"]
    by_dag: dict[str, list] = {}
    for key, value in runs.items():
        by_dag.setdefault(key[0], []).append((key, value))
    assert [key[1] for key, _ in by_dag["parity_cron"]] == ["scheduled"] * 3
    assert all(value[2] == "success" for _, value in by_dag["parity_cron"])
    assert [key[1] for key, _ in by_dag["parity_consumer"]] == ["asset_triggered"]

    def tis_of(dag_id: str) -> set:
        ((key, _),) = by_dag[dag_id]
        return tis[key]

    assert tis_of("parity_retries") == {
        ("flaky", -1, "failed", 2),
        ("downstream", -1, "upstream_failed", 0),
        ("cleanup", -1, "success", 1),
    }
    fan = {(task, state) for task, _, state, _ in tis_of("parity_fan")}
    assert fan >= {
        ("broken", "failed"),
        ("join_one_success", "success"),
        ("join_all_success", "upstream_failed"),
        ("join_none_failed", "upstream_failed"),
    }
    assert {(task, state) for task, _, state, _ in tis_of("parity_empty_hops")} == {
        ("start", "success"),
        ("middle", "success"),
        ("work", "success"),
        ("broken", "failed"),
        ("after_all_done", "success"),
        ("after_all_success", "upstream_failed"),
    }
    assert {(t, m, s) for t, m, s, _ in tis_of("parity_mapped") if t == "double"} == {
        ("double", i, "success") for i in range(3)
    }
    ((_, conf_run),) = by_dag["parity_conf"]
    assert conf_run[2] == "success" and conf_run[3] == {"n": 5}
