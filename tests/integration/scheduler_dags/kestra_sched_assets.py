"""An asset producer and an asset-scheduled consumer (for the Kestra scheduler tests)."""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

SCHED_ASSET = Asset("kestra://scheduler-test/asset")


@dag(dag_id="kestra_sched_producer", schedule=None, catchup=False)
def kestra_sched_producer():
    @task(outlets=[SCHED_ASSET])
    def produce() -> None:
        return None

    produce()


@dag(dag_id="kestra_sched_consumer", schedule=[SCHED_ASSET], catchup=False)
def kestra_sched_consumer():
    @task
    def consume() -> None:
        return None

    consume()


kestra_sched_producer()
kestra_sched_consumer()
