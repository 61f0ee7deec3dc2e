from __future__ import annotations

import pytest

from airflow_kestra_provider.bench.recovery import Scenario, recovery_table, scenario_result, scenarios
from airflow_kestra_provider.bench.target import BenchUsageError


def test_a_worker_kill_runs_on_two_remote_workers_and_a_scheduler_kill_on_each_stack():
    assert scenarios(["worker", "scheduler"], ["stock", "kestra"]) == [
        Scenario("worker", "kestra-remote2"),
        Scenario("scheduler", "stock"),
        Scenario("scheduler", "kestra"),
    ]


@pytest.mark.parametrize(
    ("kills", "stacks"), [([], ["kestra"]), (["triggerer"], ["kestra"]), (["scheduler"], ["executor"])]
)
def test_unknown_kills_and_stacks_are_usage_errors(kills, stacks):
    with pytest.raises(BenchUsageError):
        scenarios(kills, stacks)


def test_the_result_splits_by_state_at_the_kill_and_says_when_not_all_recovered():
    affected = {
        ("r1", "t", -1): (1, "running"),
        ("r2", "t", -1): (1, "queued"),
        ("r3", "t", -1): (1, "running"),
    }
    partial = scenario_result(
        Scenario("worker", "kestra-remote2"), 3, 10.0, affected, {("r1", "t", -1): 31.0, ("r2", "t", -1): 0.4},
        {"success": 2, "running": 1},
    )  # fmt: skip
    assert partial["all_recovered_after"] is None
    assert partial["by_state_at_kill"]["running"]["affected"] == 2
    assert partial["by_state_at_kill"]["running"]["recovered"] == 1
    assert partial["by_state_at_kill"]["queued"]["seconds"]["max"] == 0.4
    full = scenario_result(
        Scenario("worker", "kestra-remote2"), 3, 10.0, affected,
        {("r1", "t", -1): 31.0, ("r2", "t", -1): 0.4, ("r3", "t", -1): 33.5}, {"success": 3},
    )  # fmt: skip
    assert full["all_recovered_after"] == 33.5
    table = recovery_table([partial, full])
    assert (
        "| worker | kestra-remote2 | 3 (1/2) | 2/3 | not all | 400 ms | 31.00 s | 1 running, 2 success |"
        in table
    )
    assert "| 3/3 | 33.50 s | 400 ms | 33.50 s | 3 success |" in table
