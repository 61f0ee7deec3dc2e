"""A chain of ten no-op tasks: per-link latency of the scheduler and executor.

Each link waits for the previous task to finish, so run duration / 10 is the time the stack
needs to notice a finished task, schedule its downstream task and start it.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, task


@dag(dag_id="kestra_bench_chain10", schedule=None, catchup=False, tags=["kestra", "bench"])
def kestra_bench_chain10():
    @task
    def link() -> None:
        return None

    chain(*[link.override(task_id=f"link_{i}")() for i in range(10)])


kestra_bench_chain10()
