"""The "zoo" run under LocalExecutor and KestraExecutor by tests/integration/test_executor_parity.py.

One DAG per executor and triggerer feature that is easy to get wrong: deferral, a deferred task
marked success while it waits (its trigger must be cancelled), an asset watcher, reschedule-mode
sensors, mapped tasks, retries, trigger rules, a non-default queue, a task cleared while running
and a task marked success while running. The marks and the clear are driven by the test through
the REST API; the watched file is created by the test.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.providers.standard.triggers.file import FileDeleteTrigger
from airflow.sdk import Asset, AssetWatcher, dag, task

RETRY_DELAY = datetime.timedelta(seconds=1)
RESCHEDULE_AFTER = datetime.timedelta(seconds=6)


@dag(dag_id="zoo_deferrable", schedule=None)
def zoo_deferrable():
    # Defers to the triggerer for 15 s from the start of its task process, then resumes with the
    # same try. Not TimeDeltaSensor(delta=5 s, deferrable=True): that counts from the run's
    # run_after and does not defer at all when its task process starts late (on a loaded machine
    # task processes take 10 s and more to start). And not a shorter wait: stock LocalExecutor
    # fails the task ("finished with state success, but the task instance's state attribute is
    # queued") when the trigger fires and the TI is queued again before the executor reported the
    # deferred process's exit, which under load was seen 5.6 s after that exit.
    wait = DateTimeSensorAsync(
        task_id="wait", target_time="{{ ti.start_date + macros.timedelta(seconds=15) }}"
    )

    @task
    def after_wait() -> None:
        return None

    wait >> after_wait()


@dag(dag_id="zoo_deferred_marked", schedule=None)
def zoo_deferred_marked():
    # Defers for an hour; the test marks it success through the REST API while it is deferred,
    # so the triggerer must cancel its trigger (and the trigger row must be cleaned up).
    wait_long = DateTimeSensorAsync(
        task_id="wait_long", target_time="{{ ti.start_date + macros.timedelta(hours=1) }}"
    )

    @task
    def after_wait_long() -> None:
        return None

    wait_long >> after_wait_long()


# The file the test creates in each stack's AIRFLOW_HOME; the triggerer's watcher deletes it and
# the asset event it sends starts one run of zoo_watched.
WATCHED_FILE = Path(os.environ.get("AIRFLOW_HOME", "/nonexistent")) / "zoo_watched_file"
WATCHED = Asset(
    "zoo_watched_file",
    watchers=[
        AssetWatcher(name="zoo_file", trigger=FileDeleteTrigger(filepath=str(WATCHED_FILE), poke_interval=1))
    ],
)


@dag(dag_id="zoo_watched", schedule=[WATCHED])
def zoo_watched():
    @task
    def on_file() -> None:
        return None

    on_file()


def _six_seconds_after_the_first_poke(**context) -> bool:
    # The first poke always says no; later ones yes once 6 s have passed since the first. Counted
    # from the first poke, not from the run's start, so a sensor that starts late (loaded machine)
    # still gives its slot back at least once.
    first_poke = context["ti"].get_first_reschedule_date(context)
    if first_poke is None:
        return False
    return datetime.datetime.now(datetime.timezone.utc) - first_poke >= RESCHEDULE_AFTER


@dag(dag_id="zoo_reschedule", schedule=None)
def zoo_reschedule():
    # Pokes, gives its slot back (UP_FOR_RESCHEDULE) and is queued again with the same try. The
    # interval is long for the same reason as the deferrable sensor's wait: stock's scheduler fails
    # the task ("reported that the task instance ... finished with state success, but the task
    # instance's state attribute is scheduled") when LocalExecutor reports the reschedule exit after
    # the reschedule date has passed and the task is scheduled again; with 2 s that was seen under
    # load in a full test run.
    poke = PythonSensor(
        task_id="poke",
        python_callable=_six_seconds_after_the_first_poke,
        mode="reschedule",
        poke_interval=12,
        timeout=120,
    )

    @task
    def after_poke() -> None:
        return None

    poke >> after_poke()


@dag(dag_id="zoo_mapped", schedule=None)
def zoo_mapped():
    @task
    def square(x: int) -> int:
        return x * x

    @task
    def total(values: list[int]) -> int:
        result = sum(values)
        if result != 1 + 4 + 9 + 16:
            raise ValueError(f"expected 30, got {result}")
        return result

    total(square.expand(x=[1, 2, 3, 4]))


@dag(dag_id="zoo_retries", schedule=None)
def zoo_retries():
    @task(retries=1, retry_delay=RETRY_DELAY)
    def fails_once(**context) -> None:
        if context["ti"].try_number == 1:
            raise RuntimeError("planned failure on try 1")

    @task(retries=1, retry_delay=RETRY_DELAY)
    def always_fails() -> None:
        raise RuntimeError("planned failure on every try")

    fails_once()
    always_fails()


@dag(dag_id="zoo_trigger_rules", schedule=None)
def zoo_trigger_rules():
    @task
    def broken() -> None:
        raise RuntimeError("planned failure")

    @task(trigger_rule="one_failed")
    def on_one_failed() -> None:
        return None

    @task(trigger_rule="all_done")
    def on_all_done() -> None:
        return None

    @task(trigger_rule="all_success")
    def on_all_success() -> None:
        return None

    @task(trigger_rule="none_failed")
    def on_none_failed() -> None:
        return None

    broken() >> [on_one_failed(), on_all_done(), on_all_success(), on_none_failed()]


@dag(dag_id="zoo_queue", schedule=None)
def zoo_queue():
    @task(queue="zoo_queue")
    def on_zoo_queue() -> None:
        return None

    on_zoo_queue()


def _started(context) -> None:
    """Tell the test the task body runs (the TI's state alone says so before the process starts)."""
    path = context["dag_run"].conf.get("started_dir")
    if path:
        (Path(path) / f"{context['ti'].task_id}.{context['ti'].try_number}").touch()


@dag(dag_id="zoo_cleared", schedule=None)
def zoo_cleared():
    # The test clears this task while try 1 sleeps; the next try returns at once.
    @task
    def cleared_while_running(**context) -> None:
        if context["ti"].try_number == 1:
            _started(context)
            time.sleep(20)

    @task
    def after_clear() -> None:
        return None

    cleared_while_running() >> after_clear()


@dag(dag_id="zoo_marked", schedule=None)
def zoo_marked():
    # The test marks this task success while it sleeps; the downstream task must then run.
    @task
    def marked_while_running(**context) -> None:
        _started(context)
        time.sleep(30)

    @task
    def after_mark() -> None:
        return None

    marked_while_running() >> after_mark()


for _factory in (
    zoo_deferrable,
    zoo_deferred_marked,
    zoo_watched,
    zoo_reschedule,
    zoo_mapped,
    zoo_retries,
    zoo_trigger_rules,
    zoo_queue,
    zoo_cleared,
    zoo_marked,
):
    _factory()
