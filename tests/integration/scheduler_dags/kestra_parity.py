"""DAGs run under both the stock and the Kestra scheduler by tests/integration/test_scheduler_parity.py."""

from __future__ import annotations

import datetime

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Asset, dag, task

PARITY_ASSET = Asset("kestra://parity/asset")
# Three daily intervals that ended before today: a catch-up of exactly three runs, the same on
# every stack started today.
TODAY = pendulum.today("UTC")
CRON_START = TODAY - datetime.timedelta(days=3)
CRON_END = TODAY - datetime.timedelta(days=1)


# Paused at creation: the test unpauses it once the stack is up, so its catch-up runs do not race
# the api-server's start (tasks that cannot reach the Execution API in time fail before running).
@dag(
    dag_id="parity_cron",
    schedule="@daily",
    start_date=CRON_START,
    end_date=CRON_END,
    catchup=True,
    is_paused_upon_creation=True,
)
def parity_cron():
    @task
    def tick() -> None:
        return None

    tick() >> EmptyOperator(task_id="after")


@dag(dag_id="parity_retries", schedule=None)
def parity_retries():
    @task(retries=1, retry_delay=datetime.timedelta(seconds=1))
    def flaky() -> None:
        raise RuntimeError("always fails")

    @task
    def downstream() -> None:
        return None

    @task(trigger_rule="all_done")
    def cleanup() -> None:
        return None

    failed = flaky()
    failed >> downstream()
    failed >> cleanup()


@dag(dag_id="parity_fan", schedule=None)
def parity_fan():
    @task
    def start() -> None:
        return None

    @task
    def ok_a() -> None:
        return None

    @task
    def ok_b() -> None:
        return None

    @task
    def broken() -> None:
        raise RuntimeError("fan-out branch fails")

    @task(trigger_rule="one_success")
    def join_one_success() -> None:
        return None

    @task(trigger_rule="all_success")
    def join_all_success() -> None:
        return None

    @task(trigger_rule="none_failed")
    def join_none_failed() -> None:
        return None

    @task(trigger_rule="all_failed")
    def join_all_failed() -> None:
        return None

    branches = [ok_a(), ok_b(), broken()]
    start() >> branches
    for join in (join_one_success(), join_all_success(), join_none_failed(), join_all_failed()):
        branches >> join


# EmptyOperators, which the scheduler sets to success itself: two in a row at the start, one that
# runs whatever its upstream did, one that an upstream failure stops.
@dag(dag_id="parity_empty_hops", schedule=None)
def parity_empty_hops():
    @task
    def work() -> None:
        return None

    @task
    def broken() -> None:
        raise RuntimeError("fails on purpose")

    start, middle = EmptyOperator(task_id="start"), EmptyOperator(task_id="middle")
    branches = [work(), broken()]
    start >> middle >> branches
    branches >> EmptyOperator(task_id="after_all_done", trigger_rule="all_done")
    branches >> EmptyOperator(task_id="after_all_success")


@dag(dag_id="parity_mapped", schedule=None)
def parity_mapped():
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    total(double.expand(x=numbers()))


@dag(dag_id="parity_producer", schedule=None)
def parity_producer():
    @task(outlets=[PARITY_ASSET])
    def produce() -> None:
        return None

    produce()


@dag(dag_id="parity_consumer", schedule=[PARITY_ASSET])
def parity_consumer():
    @task
    def consume() -> None:
        return None

    consume()


@dag(dag_id="parity_conf", schedule=None, params={"n": 1})
def parity_conf():
    @task
    def check(params: dict | None = None) -> None:
        if params is None or params["n"] != 5:
            raise ValueError(f"expected n=5 from the run conf, got {params}")

    check()


for _factory in (
    parity_cron,
    parity_retries,
    parity_fan,
    parity_empty_hops,
    parity_mapped,
    parity_producer,
    parity_consumer,
    parity_conf,
):
    _factory()
