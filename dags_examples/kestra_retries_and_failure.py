"""Retries and a planned failure.

``flaky`` fails on its first try and succeeds on its retry (it looks at its own try number).
``always_fails`` fails on every try, so after its one retry it ends ``failed``; ``cleanup``
(trigger rule ``all_done``) still runs, ``publish`` (default ``all_success``) ends
``upstream_failed`` and so the run ends ``failed``. Demonstrates that failure events, retries and
trigger rules behave as in stock Airflow.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="kestra_retries_and_failure",
    schedule=None,
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
    tags=["kestra", "example"],
)
def kestra_retries_and_failure():
    @task
    def flaky() -> str:
        try_number = get_current_context()["ti"].try_number
        if try_number < 2:
            raise RuntimeError(f"planned failure on try {try_number}; the retry succeeds")
        return f"succeeded on try {try_number}"

    @task
    def always_fails() -> None:
        raise RuntimeError("planned failure: this task fails on every try")

    @task(trigger_rule="all_done")
    def cleanup() -> str:
        return "ran although an upstream task failed"

    @task
    def publish() -> str:
        return "never runs: its upstream task failed"

    failing = always_fails()
    [flaky(), failing] >> cleanup()
    failing >> publish()


kestra_retries_and_failure()
