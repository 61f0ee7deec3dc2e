from __future__ import annotations

import uuid
from pathlib import Path

from airflow_kestra_provider.queue.claims import ClaimedWorkload
from airflow_kestra_provider.worker.workloads import from_row, to_row


def execute_task(run_id: str = "manual__1", try_number: int = 2, token: str = "signed-by-the-scheduler"):
    from airflow.executors.workloads import BundleInfo, ExecuteTask
    from airflow.executors.workloads.task import TaskInstanceDTO

    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        task_id="noop",
        dag_id="kestra_bench_noop",
        run_id=run_id,
        try_number=try_number,
        dag_version_id=uuid.uuid4(),
        map_index=-1,
        hostname=None,
        context_carrier={},
        queue="default",
        pool_slots=1,
        priority_weight=3,
    )
    return ExecuteTask(
        ti=ti,
        dag_rel_path=Path("kestra_bench_noop.py"),
        token=token,
        log_path=f"dag_id=kestra_bench_noop/run_id={run_id}/task_id=noop/attempt={try_number}.log",
        bundle_info=BundleInfo(name="dags-folder", version=None),
    )


def test_a_row_carries_the_schedulers_workload_token_and_all():
    workload = execute_task()
    row = to_row(workload)
    assert row.ti_id == str(workload.ti.id)
    assert (row.try_number, row.queue, row.priority_weight, row.map_index) == (2, "default", 3, -1)
    back = from_row(ClaimedWorkload(row.id, row.ti_id, row.try_number, row.workload))
    assert back == workload
    assert back.token == "signed-by-the-scheduler"


def test_each_queueing_of_the_same_try_is_its_own_row():
    workload = execute_task()
    assert to_row(workload).id != to_row(workload).id
