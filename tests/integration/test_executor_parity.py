"""The same DAGs under stock Airflow and under the Kestra components: same outcomes.

Two stacks for the module, each on its own database of the embedded PostgreSQL with api-server
and dag-processor: one runs the stock ``airflow scheduler`` with LocalExecutor and the stock
``airflow triggerer``, the other ``airflow kestra scheduler`` with the KestraExecutor and
``airflow kestra triggerer``. Both get the "zoo" of ``executor_dags/kestra_zoo.py``: a
deferrable sensor, a deferred sensor marked success through the REST API while it waits (its
trigger must be cancelled and cleaned up), an asset watcher (the test creates the file it
watches), a reschedule-mode sensor, mapped tasks, retries, trigger rules, a task on a non-default
queue, a task cleared through the REST API while it runs and a task marked success through the
REST API while it runs. One run per DAG on each stack (manual, or by the watcher's asset event);
once every run is finished, the run state and the task instances (task, map index, state, try
number) of each DAG must be identical on both, and equal to what stock gives (``EXPECTED``), and
the sensors must really have deferred / been rescheduled on both.

Timing-dependent outcomes are designed out of the zoo (see the comments in the DAG file): under
load task processes take 10-20 s to start here, and stock itself fails a deferred task whose
trigger fires before LocalExecutor reported the deferred process's exit.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.stack import AirflowStack, StackFailed
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ZOO = (
    "zoo_deferrable",
    "zoo_deferred_marked",
    "zoo_watched",
    "zoo_reschedule",
    "zoo_mapped",
    "zoo_retries",
    "zoo_trigger_rules",
    "zoo_queue",
    "zoo_cleared",
    "zoo_marked",
)
WATCHED = "zoo_watched"  # started by its asset watcher, not triggered by the test
RUN_ID = "zoo__manual"
# The (dag_id, task_id) the test clears, and the one it marks success, through the REST API
# once each is running; and the one it marks success once it is deferred.
CLEAR = ("zoo_cleared", "cleared_while_running")
MARK = ("zoo_marked", "marked_while_running")
MARK_DEFERRED = ("zoo_deferred_marked", "wait_long")
ACTIONS = (CLEAR, MARK, MARK_DEFERRED)
TIMEOUT = 120.0  # stock finishes the zoo in 35-50 s on 2 loaded cores

_RUNS = sa.text("SELECT dag_id, run_id, state FROM dag_run WHERE dag_id LIKE 'zoo\\_%'")
_TIS = sa.text(
    """
    SELECT dag_id, run_id, task_id, map_index, state, try_number
    FROM task_instance WHERE dag_id LIKE 'zoo\\_%'
    """
)
_TI_STATE = sa.text(
    "SELECT state FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t AND map_index = -1"
)
_TASK_TRIGGERS = sa.text("SELECT count(*) FROM trigger WHERE classpath LIKE '%DateTimeTrigger'")
_RESCHEDULES = sa.text(
    "SELECT count(*) FROM task_reschedule tr JOIN task_instance ti ON ti.id = tr.ti_id "
    "WHERE ti.dag_id = 'zoo_reschedule' AND ti.task_id = 'poke'"
)


@dataclass
class Side:
    """One stack of the comparison, with what the test did to it and what it ended with."""

    stack: AirflowStack
    engine: sa.Engine
    # The zoo's sleeping tasks touch a file here once their body runs (the TI is RUNNING in the
    # database as soon as ti_run is called, which on a loaded machine can be seconds before).
    started_dir: Path
    actions: dict[tuple[str, str], Any] = field(default_factory=dict)
    finished: bool = False
    runs: dict[str, str] = field(default_factory=dict)
    tis: dict[str, set[tuple[str, int, str | None, int]]] = field(default_factory=dict)
    reschedules: int = 0
    task_triggers: int = 0  # trigger rows of the DateTimeSensorAsync tasks left
    elapsed: float | None = None
    dead: str | None = None
    # Every state the test saw each (dag_id, task_id) in while polling, to check the sensors
    # really deferred / gave their slot back, whatever their final state says.
    seen: dict[tuple[str, str], set[str | None]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("zoo_dags")
    shutil.copy(HERE / "executor_dags" / "kestra_zoo.py", folder)
    return folder


def _extra() -> dict[str, str]:
    return {
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }


def _trigger_all(side: Side) -> None:
    with side.stack.client() as client:
        for dag_id in ZOO:
            client.wait_for_dag(dag_id, timeout=120)
        for dag_id in ZOO:
            if dag_id != WATCHED:
                client.trigger(dag_id, conf={"started_dir": str(side.started_dir)}, run_id=RUN_ID)
    (side.stack.config.home / "zoo_watched_file").touch()


def _ti_state(engine: sa.Engine, dag_id: str, task_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(_TI_STATE, {"d": dag_id, "r": RUN_ID, "t": task_id}).scalar()


def _act(side: Side) -> None:
    """Clear / mark success the tasks the zoo expects that of, once each is running (deferred)."""
    for key in ACTIONS:
        if key in side.actions:
            continue
        if key == MARK_DEFERRED:
            if _ti_state(side.engine, *key) != "deferred":
                continue
        elif not (side.started_dir / f"{key[1]}.1").exists() or _ti_state(side.engine, *key) != "running":
            continue
        dag_id, task_id = key
        with side.stack.client() as client:
            if key == CLEAR:
                side.actions[key] = client.clear_task_instances(dag_id, RUN_ID, [task_id])
            else:
                side.actions[key] = client.set_task_instance_state(dag_id, RUN_ID, task_id, "success")


def _read(side: Side) -> None:
    with side.engine.connect() as conn:
        side.runs = {row.dag_id: row.state for row in conn.execute(_RUNS)}
        side.tis = {dag_id: set() for dag_id in side.runs}
        for ti in conn.execute(_TIS):
            side.tis.setdefault(ti.dag_id, set()).add((ti.task_id, ti.map_index, ti.state, ti.try_number))
            side.seen.setdefault((ti.dag_id, ti.task_id), set()).add(ti.state)
        side.reschedules = int(conn.execute(_RESCHEDULES).scalar_one())
        side.task_triggers = int(conn.execute(_TASK_TRIGGERS).scalar_one())
    side.finished = (
        len(side.actions) == len(ACTIONS)
        and set(side.runs) == set(ZOO)
        and all(state in ("success", "failed") for state in side.runs.values())
    )


@pytest.fixture(scope="module")
def sides(start_stack, dags_folder, tmp_path_factory) -> Any:
    stacks = {
        "stock": start_stack(
            executor="LocalExecutor",
            scheduler_args=("scheduler",),
            dags_folder=dags_folder,
            extra=_extra(),
        ),
        "kestra": start_stack(
            executor=KESTRA_EXECUTOR,
            scheduler_args=("kestra", "scheduler"),
            triggerer_args=("kestra", "triggerer"),
            dags_folder=dags_folder,
            extra=_extra(),
        ),
    }
    result = {
        name: Side(
            stack,
            sa.create_engine(stack.config.sql_alchemy_conn),
            tmp_path_factory.mktemp(f"zoo_started_{name}"),
        )
        for name, stack in stacks.items()
    }
    try:
        for side in result.values():
            _trigger_all(side)
        start = time.monotonic()
        deadline = start + TIMEOUT
        while time.monotonic() < deadline and not all(s.finished or s.dead for s in result.values()):
            time.sleep(0.5)
            for side in result.values():
                if side.finished or side.dead:
                    continue
                try:
                    side.stack.raise_if_dead()
                except StackFailed as err:
                    side.dead = str(err)
                    continue
                _act(side)
                _read(side)
                if side.finished:
                    side.elapsed = time.monotonic() - start
        for side in result.values():
            _read(side)
        yield result
    finally:
        for side in result.values():
            side.engine.dispose()


def _both(sides: dict[str, Side], dag_id: str) -> str:
    return "\n".join(
        f"{name:>6}: run {side.runs.get(dag_id)}; tis {sorted(side.tis.get(dag_id, ()), key=str)}"
        + (f"\n        (a component died: {side.dead})" if side.dead else "")
        for name, side in sides.items()
    )


def test_every_run_finished_on_both_stacks(sides):
    unfinished = {
        name: {
            "runs": {d: s for d, s in side.runs.items() if s not in ("success", "failed")},
            "missing": sorted(set(ZOO) - set(side.runs)),
            "not acted on": sorted(str(k) for k in set(ACTIONS) - set(side.actions)),
            "died": side.dead,
        }
        for name, side in sides.items()
        if not side.finished
    }
    elapsed = {name: side.elapsed for name, side in sides.items()}
    assert unfinished == {}, f"not finished after {TIMEOUT:.0f}s: {unfinished} (finished: {elapsed})"


@pytest.mark.parametrize("dag_id", ZOO)
def test_same_outcome(sides, dag_id):
    stock, kestra = sides["stock"], sides["kestra"]
    assert (kestra.runs.get(dag_id), kestra.tis.get(dag_id)) == (
        stock.runs.get(dag_id),
        stock.tis.get(dag_id),
    ), f"{dag_id} differs:\n{_both(sides, dag_id)}"


# What stock Airflow 3.3.2 with LocalExecutor gives for the zoo: guards against the two stacks
# agreeing on something nobody wanted (both stacks must match it, stock included).
EXPECTED = {
    "zoo_deferrable": ("success", {("wait", -1, "success", 1), ("after_wait", -1, "success", 1)}),
    "zoo_deferred_marked": (
        "success",
        {("wait_long", -1, "success", 1), ("after_wait_long", -1, "success", 1)},
    ),
    "zoo_watched": ("success", {("on_file", -1, "success", 1)}),
    "zoo_reschedule": ("success", {("poke", -1, "success", 1), ("after_poke", -1, "success", 1)}),
    "zoo_mapped": (
        "success",
        {*(("square", i, "success", 1) for i in range(4)), ("total", -1, "success", 1)},
    ),
    "zoo_retries": ("failed", {("fails_once", -1, "success", 2), ("always_fails", -1, "failed", 2)}),
    "zoo_trigger_rules": (
        "failed",
        {
            ("broken", -1, "failed", 1),
            ("on_one_failed", -1, "success", 1),
            ("on_all_done", -1, "success", 1),
            ("on_all_success", -1, "upstream_failed", 0),
            ("on_none_failed", -1, "upstream_failed", 0),
        },
    ),
    "zoo_queue": ("success", {("on_zoo_queue", -1, "success", 1)}),
    "zoo_cleared": (
        "success",
        {("cleared_while_running", -1, "success", 2), ("after_clear", -1, "success", 1)},
    ),
    "zoo_marked": (
        "success",
        {("marked_while_running", -1, "success", 1), ("after_mark", -1, "success", 1)},
    ),
}


@pytest.mark.parametrize("name", ["stock", "kestra"])
@pytest.mark.parametrize("dag_id", ZOO)
def test_the_dag_did_what_it_is_for(sides, name, dag_id):
    side = sides[name]
    assert (side.runs.get(dag_id), side.tis.get(dag_id)) == EXPECTED[dag_id], (
        f"{name} {dag_id}:\n{_both(sides, dag_id)}"
    )


@pytest.mark.parametrize("name", ["stock", "kestra"])
def test_the_sensor_really_deferred(sides, name):
    seen = sides[name].seen.get(("zoo_deferrable", "wait"), set())
    assert "deferred" in seen, f"{name}: zoo_deferrable.wait was never seen deferred, only {seen}"


@pytest.mark.parametrize("name", ["stock", "kestra"])
def test_the_marked_sensor_was_deferred_and_its_trigger_is_gone(sides, name):
    """Marked success while deferred: the triggerer cancelled its trigger and the row was
    cleaned up (as the fired one of zoo_deferrable)."""
    side = sides[name]
    assert [ti["state"] for ti in side.actions.get(MARK_DEFERRED, [])] == ["success"]
    wait_until(
        lambda: _read(side) or side.task_triggers == 0,
        30,
        lambda: f"{name}: {side.task_triggers} DateTimeTrigger rows left",
    )


@pytest.mark.parametrize("name", ["stock", "kestra"])
def test_the_sensor_really_rescheduled(sides, name):
    assert sides[name].reschedules >= 1, (
        f"{name}: zoo_reschedule.poke never rescheduled; "
        f"seen {sides[name].seen.get(('zoo_reschedule', 'poke'))}"
    )


@pytest.mark.parametrize("name", ["stock", "kestra"])
def test_the_api_actions_hit_a_running_task(sides, name):
    """The clear found the task running (RESTARTING) and the mark set it success."""
    actions = sides[name].actions
    assert [ti["state"] for ti in actions.get(CLEAR, [])] == ["restarting"], actions.get(CLEAR)
    assert [ti["state"] for ti in actions.get(MARK, [])] == ["success"], actions.get(MARK)
