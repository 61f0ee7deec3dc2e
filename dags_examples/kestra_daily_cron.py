"""A cron-scheduled DAG (``@daily``).

The scheduler creates one run per day at midnight UTC; with ``catchup=False`` only the latest
interval runs after the DAG is unpaused. Demonstrates time-based run creation, the path the
Kestra scheduler's bulk dag-run creation speeds up when thousands of DAGs are due at once.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="kestra_daily_cron",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kestra", "example"],
)
def kestra_daily_cron():
    @task
    def report(ds: str | None = None) -> str:
        return f"daily report for {ds}"

    report()


kestra_daily_cron()
