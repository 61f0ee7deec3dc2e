"""Workload rows <-> Airflow ``ExecuteTask`` workloads (no ORM objects, no queries).

The scheduler builds each ``ExecuteTask`` (its token signed by the scheduler's JWT generator);
the executor stores it as JSON in its ``kestra_workload`` row and the worker that claims the
row runs exactly that workload. Workers hold no signing secret.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from airflow_kestra_provider.queue.claims import ClaimedWorkload, QueuedWorkload

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask


def to_row(workload: ExecuteTask) -> QueuedWorkload:
    """The row one queueing of ``workload`` is stored as (a fresh id for each queueing)."""
    ti = workload.ti
    return QueuedWorkload(
        id=str(uuid.uuid4()),
        ti_id=str(ti.id),
        try_number=ti.try_number,
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=ti.map_index,
        queue=ti.queue or "default",
        priority_weight=ti.priority_weight or 1,
        workload=workload.model_dump_json(),
    )


def from_row(row: ClaimedWorkload) -> ExecuteTask:
    """The ``ExecuteTask`` a claimed row holds."""
    from airflow.executors.workloads import ExecuteTask

    return ExecuteTask.model_validate_json(row.workload)
