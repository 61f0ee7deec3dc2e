"""KestraExecutor: workers claim the workloads the scheduler queued, in batches.

Each time the scheduler hands it task instances, the executor writes one ``kestra_workload`` row
per workload (the ``ExecuteTask`` the scheduler built, token included) with one INSERT per
heartbeat, wakes the embedded worker and, on PostgreSQL, NOTIFYs remote workers once. Workers
(embedded here, or ``airflow kestra worker`` processes) claim the rows with one query per poll
and record how each one ended; :meth:`sync` takes this scheduler job's finished rows with one
statement and turns them into executor events.

A row, not a ``(task instance, try)`` pair, is the unit of work: the same try queued again (after
a deferral, a reschedule, a restart) is a new row, run once. The executor keeps, per task
instance key, the rows still open; the end of a row whose try has been queued again since is no
event (the scheduler would read it as "killed externally"), and rows that never ran here
(dropped, revoked, refused at start, lost) only release their key.

Every ``[scheduler] pool_metrics_interval`` seconds the executor samples the queues
(:mod:`.queue_sampler`): the ``kestra.queue.*`` and ``kestra.executor.*`` gauges, a warning for
a queue nobody serves, and the stock ``executor.queued_tasks`` / ``executor.running_tasks``
gauges as unclaimed / claimed workloads (the stock ones count every workload written as
running).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.executors.base_executor import BaseExecutor, get_execution_api_server_url

from airflow_kestra_provider import settings
from airflow_kestra_provider.executors.queue_sampler import QueueSampler, database_sample
from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import ENDED_RESULTS, QueuedWorkload, ReportedResult
from airflow_kestra_provider.version_compat import check_airflow_version

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancekey import TaskInstanceKey

    from airflow_kestra_provider.worker.reaper import Reaper
    from airflow_kestra_provider.worker.worker import KestraWorker


def pool_metrics_interval() -> float:
    """Airflow's ``[scheduler] pool_metrics_interval``: how often the queues are sampled."""
    from airflow.configuration import conf

    return conf.getfloat("scheduler", "pool_metrics_interval", fallback=5.0)


class KestraExecutor(BaseExecutor):
    """Batch-claiming executor with an embedded (or remote) Kestra-style worker."""

    is_local: bool = True
    serve_logs: bool = True
    supports_callbacks: bool = False
    supports_connection_test: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker: KestraWorker | None = None
        self._reaper: Reaper | None = None
        # workload id -> its key, and key -> ids of its open workloads (usually one)
        self._workload_keys: dict[str, TaskInstanceKey] = {}
        self._open: dict[TaskInstanceKey, set[str]] = {}
        self._unsent: list[QueuedWorkload] = []
        self._queue_sampler: QueueSampler | None = None

    def start(self) -> None:
        check_airflow_version("the KestraExecutor")
        from airflow_kestra_provider.worker.reaper import Reaper
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
        self._reaper = Reaper(config.worker_timeout, config.heartbeat_interval)
        self._queue_sampler = QueueSampler(pool_metrics_interval(), database_sample(config.worker_timeout))
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

        from airflow_kestra_provider.worker.workloads import to_row

        for workload in workload_items:
            if not isinstance(workload, ExecuteTask):
                raise ValueError(f"KestraExecutor cannot run {type(workload).__name__} workloads")
            key = workload.ti.key
            self.queued_tasks.pop(key, None)
            row = to_row(workload)
            self._track(row.id, key)
            self._unsent.append(row)
        self._send()

    def _track(self, workload_id: str, key: TaskInstanceKey) -> None:
        self._workload_keys[workload_id] = key
        self._open.setdefault(key, set()).add(workload_id)
        self.running.add(key)

    def _send(self) -> None:
        """Write the workloads not written yet (one statement) and wake the workers."""
        if not self._unsent:
            return
        try:
            with claims.session_scope() as session:
                claims.enqueue(session, self.job_id, self._unsent)  # type: ignore[arg-type]
                # Always: a worker may listen whatever this scheduler's own listen_notify says.
                claims.notify(session)
        except Exception:
            self.log.exception(
                "could not write %d workloads; retrying at the next heartbeat", len(self._unsent)
            )
            return
        self._unsent = []
        if self.worker is not None:
            self.worker.wake()

    # -- metrics --------------------------------------------------------------------------
    def _emit_metrics(self, open_slots: int, num_running_tasks: int, num_queued_tasks: int) -> None:
        """The stock gauges, with queued and running as the workers see them: a workload written
        for the workers is running for the stock code (its key is in ``running``) until one
        claims it. From the last queue sample: queued adds this job's unclaimed workloads to
        the keys not handed over yet (and those not written yet), running is its claimed ones."""
        sampler = self._queue_sampler
        sample = sampler.tick(int(self.job_id) if self.job_id is not None else None) if sampler else None
        if sample is not None:
            num_queued_tasks += len(self._unsent) + sample.job_unclaimed
            num_running_tasks = sample.job_claimed
        super()._emit_metrics(open_slots, num_running_tasks, num_queued_tasks)

    # -- workers -> scheduler -------------------------------------------------------------
    def sync(self) -> None:
        if self.worker is not None and not self.worker.alive():
            self.log.error("the embedded kestra worker has a dead thread; see the log above")
        self._send()
        self._reap()
        if not self.running:
            return
        try:
            with claims.session_scope() as session:
                reported = claims.report_finished(session, self.job_id)  # type: ignore[arg-type]
        except Exception:
            self.log.exception("could not read finished task instances; retrying at the next heartbeat")
            return
        for row in reported:
            self._settle(row)

    def _settle(self, row: ReportedResult) -> None:
        key = self._workload_keys.pop(row.workload_id, None)
        if key is None:  # revoked or adopted away: nothing of ours waits for it
            return
        still_open = self._open.get(key, set())
        still_open.discard(row.workload_id)
        if still_open:
            # The same try was queued again before this end was reported (resume after a
            # deferral, a reschedule): the try is not over, and the newer workload reports it.
            self.log.debug("%s: earlier workload %s ended (%s)", key, row.workload_id, row.result)
            return
        self._open.pop(key, None)
        if row.result not in ENDED_RESULTS:
            self.log.info("%s: workload %s %s (%s)", key, row.workload_id, row.result, row.detail or "")
            self.running.discard(key)
        elif row.result == "success":
            self.success(key)
        else:
            self.log.warning("task instance %s ended on its worker as failed: %s", key, row.detail)
            self.fail(key, info=row.detail)

    def _reap(self) -> None:
        """Settle dead workers' claims from the scheduler side too (no worker may be alive), and
        take over the rows of scheduler jobs that are gone (a crashed scheduler)."""
        reaper = self._reaper
        if reaper is None or not reaper.due():
            return
        try:
            with claims.session_scope() as session:
                reaper.reap(session, "KestraExecutor")
                orphans = (
                    claims.adopt_orphans(
                        session, int(self.job_id), settings.scheduler_health_check_threshold()
                    )
                    if self.job_id is not None
                    else []
                )
            reaper.database_ok()
        except Exception:
            reaper.database_failed()
            self.log.exception("could not reap dead workers; retrying later")
            return
        self._track_adopted(orphans)
        if orphans:
            self.log.warning("took over %d workloads of scheduler jobs that are gone", len(orphans))

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Forget ``ti`` (stuck in QUEUED past ``task_queued_timeout``) and withdraw its workloads."""
        self.queued_tasks.pop(ti.key, None)
        self.running.discard(ti.key)
        for workload_id in self._open.pop(ti.key, set()):
            self._workload_keys.pop(workload_id, None)
        self._unsent = [w for w in self._unsent if w.ti_id != str(ti.id)]
        try:
            with claims.session_scope() as session:
                claims.revoke(session, str(ti.id), ti.try_number)
        except Exception:
            self.log.exception("could not revoke the workloads of %s", ti.key)

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Adopt the task instances: their open workloads keep running (or are claimed later) and
        report to this scheduler job from now on. A RUNNING one without an open workload is
        adopted too (its task ends through the Execution API, or the scheduler's heartbeat
        timeout fails it). Only a QUEUED one whose workload was never written (its scheduler died
        before its executor heartbeat) is handed back to be reset, as stock executors do."""
        if not tis:
            return []
        try:
            with claims.session_scope() as session:
                adopted = claims.adopt(session, self.job_id, [str(ti.id) for ti in tis])  # type: ignore[arg-type]
        except Exception:
            self.log.exception("could not adopt %d task instances; resetting them", len(tis))
            return tis
        found = self._track_adopted(adopted)
        not_adopted = [ti for ti in tis if ti.key not in found and ti.state == "queued"]
        self.log.info("adopted %d task instances, %d to reset", len(found), len(not_adopted))
        return not_adopted

    def _track_adopted(self, rows: list[tuple[str, tuple[str, str, str, int, int]]]) -> set[TaskInstanceKey]:
        from airflow.models.taskinstancekey import TaskInstanceKey

        keys = set()
        for workload_id, (dag_id, task_id, run_id, map_index, try_number) in rows:
            key = TaskInstanceKey(dag_id, task_id, run_id, try_number, map_index)
            self._track(workload_id, key)
            keys.add(key)
        return keys

    # -- shutdown -------------------------------------------------------------------------
    def end(self) -> None:
        """Stop claiming and let running tasks finish; their results stay in the database.

        No final ``sync()``: the scheduler processes no events after ``end()``, so taking them
        would hide them from the scheduler job that adopts these task instances next.
        """
        self._send()
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
