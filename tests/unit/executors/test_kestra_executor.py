"""Executor bookkeeping that needs no database: keys, slots, revocation."""

from __future__ import annotations

import pytest

from airflow_kestra_provider.executors.kestra_executor import KestraExecutor
from airflow_kestra_provider.worker.workloads import WorkloadBuilder, make_jwt_generator
from tests.unit.worker.test_workloads import claimed

SECRET = "a-test-secret-that-is-long-enough-for-hs512-signing-0123456789-abcdef"


@pytest.fixture
def workloads(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
    builder = WorkloadBuilder(make_jwt_generator())
    return [builder.build(claimed(run_id=f"manual__{i}")) for i in range(3)]


def test_handed_workloads_become_running_keys_and_slots_stay_honest(monkeypatch, workloads):
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
    executor = KestraExecutor(parallelism=4)
    for workload in workloads:
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    assert executor.slots_available == 1
    executor.trigger_tasks(open_slots=2)  # the two highest-priority ones are handed out
    assert len(executor.running) == 2
    assert len(executor.queued_tasks) == 1
    assert executor.slots_available == 1
    executor.trigger_tasks(open_slots=2)
    assert executor.running == {w.ti.key for w in workloads}
    assert executor.queued_tasks == {}
    assert executor.slots_available == 1
