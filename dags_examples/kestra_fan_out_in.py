"""Fan-out / fan-in with dynamic task mapping.

``split`` returns a list at run time, ``square`` is mapped over it (one mapped task instance per
element, created by the scheduler when ``split`` finishes) and ``total`` gathers every result.
Demonstrates many short task instances becoming ready at once: the executor claims them in one
batch.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="kestra_fan_out_in", schedule=None, catchup=False, tags=["kestra", "example"])
def kestra_fan_out_in():
    @task
    def split() -> list[int]:
        return list(range(8))

    @task
    def square(value: int) -> int:
        return value * value

    @task
    def total(values: list[int]) -> int:
        result = sum(values)
        if result != sum(v * v for v in range(8)):
            raise ValueError(f"unexpected sum {result}")
        return result

    total(square.expand(value=split()))


kestra_fan_out_in()
