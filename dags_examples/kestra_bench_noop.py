"""One no-op task: the DAG ``airflow kestra bench`` triggers to measure scheduling latency.

Demonstrates the shortest path through Airflow: run queued -> task queued -> task run ->
run finished. Its run duration is almost entirely scheduler and executor overhead.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="kestra_bench_noop", schedule=None, catchup=False, tags=["kestra", "bench"])
def kestra_bench_noop():
    @task
    def noop() -> None:
        return None

    noop()


kestra_bench_noop()
