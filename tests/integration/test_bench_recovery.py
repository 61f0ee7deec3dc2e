"""`bench recovery --kill scheduler` end to end: a SIGKILLed scheduler with its embedded worker,
default settings, restarted at once; every task instance it held runs again or ends, and every
run succeeds (``retries=1``).

The bench's timeout is below the 300 s after which stock Airflow's own mechanisms (task heartbeat
timeout, orphan check interval) would step in, so only the executor's take-over can pass it.
The time it took is printed, not asserted (docs/benchmarks.md holds the figure)."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_bench_stacks import _bench

pytestmark = pytest.mark.integration

BELOW_STOCK_TIMEOUTS = 240


def test_scheduler_kill_with_default_settings_recovers_every_task(embedded_postgres, tmp_path):
    out = tmp_path / "out"
    result = _bench(
        tmp_path,
        embedded_postgres,
        "recovery",
        "--kill", "scheduler",
        "--stacks", "kestra",
        "--runs", "4",
        "--sleep", "10",
        "--timeout", str(BELOW_STOCK_TIMEOUTS),
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [found] = json.loads((out / "recovery.json").read_text())["results"]
    print(f"recovery after the scheduler's SIGKILL: {found['all_recovered_after']} s; {found}")
    assert found["affected"] >= 1
    assert found["recovered"] == found["affected"], found
    assert found["run_states"] == {"success": 4 + 1}, found  # and the bench's priming run
    assert "| scheduler | kestra |" in (out / "recovery.md").read_text()
