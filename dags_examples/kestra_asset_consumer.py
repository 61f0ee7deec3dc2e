"""Scheduled on the asset ``kestra://example/orders``.

It has no time schedule: the scheduler creates a run when ``kestra_asset_producer`` emits an
event for the asset. Demonstrates asset-condition evaluation, which the Kestra scheduler does
from an id-keyed DAG cache instead of deserializing every waiting DAG on every loop.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

ORDERS = Asset("kestra://example/orders")


@dag(dag_id="kestra_asset_consumer", schedule=[ORDERS], catchup=False, tags=["kestra", "example", "asset"])
def kestra_asset_consumer():
    @task
    def read_orders(triggering_asset_events=None) -> int:
        events = triggering_asset_events[ORDERS] if triggering_asset_events else []
        return len(events)

    read_orders()


kestra_asset_consumer()
