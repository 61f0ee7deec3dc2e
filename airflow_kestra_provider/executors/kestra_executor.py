"""KestraExecutor: workers claim queued task instances from the database in batches.

The scheduler marks task instances QUEUED in the database and hands them to this executor.
The executor does not ship them anywhere: it records their keys as running (so open slots are
honest), wakes the embedded worker at once and, on PostgreSQL, NOTIFYs remote workers once per
batch. Workers (embedded here, or ``airflow kestra worker`` processes) claim the rows with one
query per poll and record how each try ended in ``kestra_task_claim``; :meth:`sync` turns the
finished, unreported claims of this scheduler job into executor events with one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.executors.base_executor import BaseExecutor, get_execution_api_server_url

from airflow_kestra_provider import settings
from airflow_kestra_provider.queue import claims

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance

    from airflow_kestra_provider.worker.worker import KestraWorker


class KestraExecutor(BaseExecutor):
    """Batch-claiming executor with an embedded (or remote) Kestra-style worker."""

    is_local: bool = True
    serve_logs: bool = True
    supports_callbacks: bool = False
    supports_connection_test: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker: KestraWorker | None = None
        self._listen_notify = False

    def start(self) -> None:
        from airflow_kestra_provider.worker.worker import (
            KestraWorker,
            WorkerSettings,
            ensure_schema,
            require_postgres,
        )

        require_postgres()
        embedded = settings.embedded_worker()
        config = WorkerSettings.from_config(embedded=True)
        if config.concurrency > self.parallelism:
            self.log.warning(
                "[kestra] worker_concurrency (%d) > [core] parallelism (%d): the scheduler never "
                "queues more than parallelism task instances to this executor",
                config.concurrency,
                self.parallelism,
            )
        self._listen_notify = settings.listen_notify()
        ensure_schema()
        if embedded:
            self.worker = KestraWorker(config, server=get_execution_api_server_url(self.conf))
            self.worker.start()
        self.log.info(
            "KestraExecutor started (parallelism %d, embedded worker %s)",
            self.parallelism,
            "on" if embedded else "off",
        )

    # -- scheduler -> workers -------------------------------------------------------------
    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        from airflow.executors.workloads import ExecuteTask

        for workload in workload_items:
            if not isinstance(workload, ExecuteTask):
                raise ValueError(f"KestraExecutor cannot run {type(workload).__name__} workloads")
            # Workers build their own workload from the claimed row; we only track the key.
            self.queued_tasks.pop(workload.ti.key, None)
            self.running.add(workload.ti.key)
        if not workload_items:
            return
        if self.worker is not None:
            self.worker.wake()
        if self._listen_notify:
            self._notify()

    def _notify(self) -> None:
        try:
            with claims.session_scope() as session:
                claims.notify(session)
        except Exception:
            self.log.exception("NOTIFY failed; remote workers will find the batch at their next poll")

    # -- workers -> scheduler -------------------------------------------------------------
    def sync(self) -> None:
        if self.worker is not None and not self.worker.alive():
            self.log.error("the embedded kestra worker has a dead thread; see the log above")
        if not self.running:
            return
        from airflow.models.taskinstancekey import TaskInstanceKey

        try:
            with claims.session_scope() as session:
                finished = claims.report_finished(session, self.job_id)  # type: ignore[arg-type]
        except Exception:
            self.log.exception("could not read finished task instances; retrying at the next heartbeat")
            return
        for row in finished:
            key = TaskInstanceKey(row.dag_id, row.task_id, row.run_id, row.try_number, row.map_index)
            if row.state == "success":
                self.success(key)
            else:
                self.log.warning("task instance %s ended on its worker as failed: %s", key, row.detail)
                self.fail(key, info=row.detail)

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Forget ``ti`` (stuck in QUEUED past ``task_queued_timeout``) and release its claim."""
        self.queued_tasks.pop(ti.key, None)
        self.running.discard(ti.key)
        try:
            with claims.session_scope() as session:
                claims.release(session, str(ti.id), ti.try_number)
        except Exception:
            self.log.exception("could not release the claim of %s", ti.key)

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Adopt every task instance: claims live in the database, so whichever worker holds
        (or will claim) one reports it to this scheduler job from now on."""
        if not tis:
            return []
        from airflow.models.taskinstancekey import TaskInstanceKey

        try:
            with claims.session_scope() as session:
                keys = claims.adopt(session, self.job_id, [str(ti.id) for ti in tis])  # type: ignore[arg-type]
        except Exception:
            self.log.exception("could not adopt %d task instances; resetting them", len(tis))
            return tis
        for dag_id, task_id, run_id, map_index, try_number in keys:
            self.running.add(TaskInstanceKey(dag_id, task_id, run_id, try_number, map_index))
        self.log.info("adopted %d task instances", len(tis))
        return []

    # -- shutdown -------------------------------------------------------------------------
    def end(self) -> None:
        """Stop claiming and let running tasks finish; their results stay in the database.

        No final ``sync()``: the scheduler processes no events after ``end()``, so taking them
        would hide them from the scheduler job that adopts these task instances next.
        """
        if self.worker is not None:
            self.worker.stop(drain=True)
            self.worker = None

    def terminate(self) -> None:
        """Stop claiming and kill running tasks."""
        if self.worker is not None:
            self.worker.stop(drain=False)
            self.worker = None

    def get_task_log(self, ti: TaskInstance, try_number: int) -> tuple[list[str], list[str]]:
        return [], []
