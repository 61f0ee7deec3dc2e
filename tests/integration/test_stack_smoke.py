"""The stack fixture itself: stock components against the embedded PostgreSQL run the no-op DAG."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_stock_stack_runs_noop(start_stack):
    stack = start_stack()
    with stack.client() as client:
        client.wait_for_dag("kestra_bench_noop", timeout=120)
        run = client.trigger("kestra_bench_noop")
        finished = client.wait_run("kestra_bench_noop", run["dag_run_id"], timeout=120)
    assert finished["state"] == "success"
