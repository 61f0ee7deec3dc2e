"""Produces the asset ``kestra://example/orders``.

Its task declares the asset as an outlet, so each successful run emits an asset event; the
DAG ``kestra_asset_consumer`` is scheduled on that asset and runs after every event.
Trigger it by hand to see the consumer start.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

ORDERS = Asset("kestra://example/orders")


@dag(dag_id="kestra_asset_producer", schedule=None, catchup=False, tags=["kestra", "example", "asset"])
def kestra_asset_producer():
    @task(outlets=[ORDERS])
    def write_orders() -> int:
        return 42

    write_orders()


kestra_asset_producer()
