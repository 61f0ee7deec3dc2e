"""``KestraSchedulerJobRunner``: the stock scheduler loop with Kestra's latency fixes.

It keeps Airflow's ``_run_scheduler_loop`` (timers, executor heartbeats, HA locking, callbacks)
and overrides only small methods:

* ``_do_scheduling``: counts what the pass did (:class:`~.work.LoopWork`: dag runs created or
  changing state, task-instance updates, TIs queued). Without notifications it returns that
  count, so the stock loop never treats a loop that did work as idle (it then skips its idle
  sleep). With them it returns the count only when the next loop must start at once for a
  reason nothing notifies (``_follow_up_due``: a step stopped at its batch or budget, a full
  critical section, runs created, a run ended while others are queued); otherwise 0, and the
  idle wait that follows ends at once on any notification that is not an echo of this
  scheduler's own commits (a task instance it scheduled, a run it created: the loop acted on
  both; :class:`~.notify.OwnConnections` tells them by the connection that sent them).
* ``_scheduler_idle_sleep_time`` (a property): read by the stock loop only right before its
  idle sleep; it waits the step-wise back-off interval (:mod:`airflow_kestra_provider.worker.backoff`, shared with the workers), cut short by a
  PostgreSQL NOTIFY (:mod:`.notify`), and returns 0 so the stock sleep is a no-op. While the
  wake-up triggers are in place and LISTEN is up, the wait is ``max_poll_interval`` at once
  (every change a loop acts on notifies; polling sooner only repeats the loop's queries).
* ``_process_executor_events``: counts the events taken from the buffer (the stock method
  returns the buffer's size after popping, so completions never counted as work).
* ``_get_current_dag`` and ``scheduler_dag_bag``: every DAG lookup (run creation, asset
  conditions, run scheduling, executor events) goes through one version-keyed, size-bounded
  :class:`~.dag_cache.KestraDagCache`; a batch of runs resolves its DAGs' newest versions with
  one query. What a batch knows is one :class:`~.batch.Batch`, replaced by ``_begin_batch``
  at the start of each batch.
* Cron schedule descriptions are computed once per expression (:mod:`.cron_descriptions`), not
  once per deserialized DAG.
* ``_create_dagruns_for_dags``: ready asset-triggered DAGs first, then due DAGs in batches of
  ``[kestra] scheduler_dagrun_batch_size`` (oldest due first, one locking query per batch,
  commit per batch) until ``[kestra] scheduler_loop_budget`` seconds are spent, instead of 10
  per loop; the rest of the loop (starting queued runs, scheduling running ones) then runs as
  usual, and the next loop starts at once because this one did work.
  Within a batch, plain DAGs get their runs from :mod:`.bulk_runs` (one INSERT for the runs, one
  for their task instances); the others go to the stock ``_create_dag_runs``. Their next-run
  fields are then set by the stock ``calculate_dagrun_date_fields``, with each distinct
  next-run question answered once per batch (:mod:`.next_run_memo`). With notifications the
  step runs only when something may have made a DAG ready (``_dag_run_creation_due``), else
  once per ``[kestra] scheduler_recheck_interval``.
* ``_start_queued_dagruns``: the stock method with queued runs taken ``[kestra]
  scheduler_dagrun_batch_size`` at a time by :mod:`.queued_runs` (same rows and order, a plan
  that stays cheap while thousands of runs are queued and running), again until the step's own
  loop budget is spent; skipped when no run is queued.
* ``_schedule_all_dag_runs``: after a full stock batch (``max_dagruns_per_loop_to_schedule``),
  take the next one until the step's own loop budget is spent; examining alternates the stock
  order with runs a finished task instance is waiting on (:mod:`.running_runs`), so finishing
  runs are never starved by bulk creation. Each batch's ``dag`` rows, and the task instances
  every run's decision reads, are loaded with one query each first (``_examine_batch``,
  :mod:`.examined_tis`). The runs of a batch that end count their DAGs' active runs (for
  ``exceeds_max_non_backfill``) with one query for the batch, not one per run
  (``_set_exceeds_max_active_runs``).
* ``_run_scheduler_loop``: only opens the LISTEN connection around the stock loop, after
  raising the garbage collector's threshold (``[kestra] scheduler_gc_threshold``).

Each loop (from one ``_do_scheduling`` to the next, its idle wait excluded) sends
``kestra.scheduler.loop_duration``, and ``busy_loops`` and ``runs_created`` from its
:class:`~.work.LoopWork` (:mod:`airflow_kestra_provider.metrics`); on PostgreSQL its duration is
also kept per minute in ``kestra_scheduler_loop`` for the UI page (:mod:`.loop_record`).
"""

from __future__ import annotations

import gc
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow._shared.timezones import timezone
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.dagrun import DagRun
from airflow.utils.state import DagRunState, State
from airflow.utils.types import DagRunType

from airflow_kestra_provider import metrics, settings
from airflow_kestra_provider.scheduler import (
    bulk_runs,
    cron_descriptions,
    due_dags,
    examined_tis,
    notify,
    queued_runs,
    running_runs,
    scheduled_tis,
    short_circuited,
)
from airflow_kestra_provider.scheduler.batch import Batch
from airflow_kestra_provider.scheduler.batching import take_in_batches
from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache, loaded_runs
from airflow_kestra_provider.scheduler.loop_record import LoopRecord, LoopRecordWriter
from airflow_kestra_provider.scheduler.next_run_memo import NextRunMemo
from airflow_kestra_provider.scheduler.work import LoopWork
from airflow_kestra_provider.worker.backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow.callbacks.callback_requests import DagCallbackRequest
    from airflow.executors.base_executor import BaseExecutor
    from airflow.jobs.job import Job
    from airflow.models.dag import DagModel
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.utils.sqlalchemy import CommitProhibitorGuard
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def set_gc_threshold(threshold: int) -> None:
    """Collect the youngest garbage-collector generation every ``threshold`` allocations (0:
    leave Python's setting of 700). A scheduler creating thousands of runs allocates millions of
    short-lived objects next to thousands of cached DAGs; with 700 it spent about a fifth of its
    CPU time collecting (py-spy, 100,000 due DAGs; docs/benchmarks.md)."""
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
        log.info("Kestra scheduler: garbage collector thresholds %s", gc.get_threshold())


def _ended(run: DagRun) -> bool:
    """A non-backfill run in a finished state: one ``active_runs_of_dags`` no longer counts."""
    return run.state in State.finished_dr_states and run.run_type != DagRunType.BACKFILL_JOB


def _more_never_examined(fetched: list[DagRun], size: int) -> bool:
    """Whether the stock query's batch (never-examined runs first) was full and all of it never
    examined, so more such runs may wait behind it."""
    return len(fetched) >= size and all(run.last_scheduling_decision is None for run in fetched)


class KestraSchedulerJobRunner(SchedulerJobRunner):
    """Scheduler job runner that never sleeps after work and caches DAGs by version."""

    def __init__(
        self,
        job: Job,
        num_runs: int = -1,
        only_idle: bool = False,
        log: Any = None,
        executors: list[BaseExecutor] | None = None,
    ) -> None:
        super().__init__(
            job,
            num_runs=num_runs,
            only_idle=only_idle,
            log=log,
            executors=executors,
        )
        self.dag_cache = KestraDagCache(settings.dag_cache_size())
        cron_descriptions.install()
        self.scheduler_dag_bag = self.dag_cache
        try:
            self.backoff = Backoff(
                settings.min_poll_interval(),
                settings.max_poll_interval(),
                settings.poll_switch_interval(),
                settings.switch_steps(),
            )
        except ValueError as err:
            raise settings.KestraConfigError(
                f"[kestra] min_poll_interval must not exceed [kestra] max_poll_interval: {err}"
            ) from None
        self._loop_budget = settings.scheduler_loop_budget()
        self._recheck = settings.scheduler_recheck_interval()
        self._critical_at = 0.0  # monotonic time of the last critical section
        self._critical_due = True  # something happened that may have made task instances queueable
        self._critical_capped = True  # the last critical section queued as many as it could take
        self._periodic_at: dict[str, float] = {}  # stock per-loop checks: when each last ran
        self._creation_due = True  # a DAG may have become ready for a run before its due time passed
        self._batch_size = settings.scheduler_dagrun_batch_size()
        self._bulk_create = settings.scheduler_bulk_create()
        self._gc_threshold = settings.scheduler_gc_threshold()
        self._listen_notify = settings.listen_notify()
        self._waker: notify.NotifyWaker | None = None
        self._own: notify.OwnConnections | None = None  # tells this scheduler's own echoes
        self._triggers_in_place = False  # the wake-up triggers exist: see _idle_wait
        self._batch = Batch()  # replaced by _begin_batch
        self._asset_memo = due_dags.AssetConditionMemo()
        self._loop = LoopWork()
        self.dag_runs_created_total = 0
        self.dag_runs_created_in_bulk = 0
        self._stats = {"loops": 0, "busy_loops": 0}
        self._stats_logged_at = time.monotonic()
        self._loop_started: float | None = None  # monotonic start of the loop in progress
        self._loop_record: LoopRecord | None = None  # PostgreSQL: durations for the UI page
        self._loop_record_writer = LoopRecordWriter()

    # -- the loop ------------------------------------------------------------------------------
    def _run_scheduler_loop(self) -> None:
        """Open the LISTEN connection (PostgreSQL) around the unchanged stock loop."""
        from airflow import settings as airflow_settings

        set_gc_threshold(self._gc_threshold)
        engine = airflow_settings.engine
        if self._listen_notify and engine is not None and notify.is_postgres(engine):
            self._triggers_in_place = notify.install_triggers(engine)
            self._own = notify.OwnConnections(engine)
            self._waker = notify.NotifyWaker(engine)
        if engine is not None and notify.is_postgres(engine):
            self._loop_record = LoopRecord(self.job.id, self.job.hostname or "")
        try:
            super()._run_scheduler_loop()
        finally:
            if self._waker is not None:
                self._waker.close()
                self._waker = None
            if self._own is not None:
                self._own.close()
                self._own = None

    @property
    def _scheduler_idle_sleep_time(self) -> float:
        """The stock loop reads this only right before its idle sleep, after a loop it judged
        idle from our counts (see ``_do_scheduling``). Wait here instead: the back-off interval,
        cut short by a NOTIFY; then return 0 so the stock ``time.sleep(min(0, ...))`` is a
        no-op. The wait stays where the stock sleep was: outside the loop-duration timer."""
        self._loop_ended()
        timeout = self._idle_wait()
        if self._waker is None:
            time.sleep(timeout)
        elif self._waker.wait(timeout, wakes=self._news):
            self.backoff.busy(time.monotonic())  # something happened: poll at the minimum again
            self._take_news()
            if not self._notified():
                self._critical_due = True
        return 0.0

    @_scheduler_idle_sleep_time.setter
    def _scheduler_idle_sleep_time(self, value: float) -> None:
        """The stock ``__init__`` assigns ``[scheduler] scheduler_idle_sleep_time``: ignored."""

    def _idle_wait(self) -> float:
        """How long an idle loop waits for a NOTIFY: the back-off interval, or, while the wake-up
        triggers are in place and the LISTEN connection is up, ``max_poll_interval`` at once.
        Then every change a loop acts on notifies (a run queued, a task instance's state, an
        asset event, a worker's results), so polling sooner would only repeat the loop's fixed
        queries; the wait is left for what nothing notifies (a DAG becoming due, an unpause)."""
        return self.backoff.idle_interval(time.monotonic(), notified=self._notified())

    def _notified(self) -> bool:
        """Every change a loop acts on notifies this scheduler: the wake-up triggers are in
        place and the LISTEN connection is up."""
        return self._triggers_in_place and self._waker is not None and self._waker.connected

    def _news(self, arrival: notify.Arrival) -> bool:
        """Whether a notification tells this scheduler something. Two kinds do not: an echo of
        its own commits that its loop already acted on (:data:`~.notify.OWN_ECHOES`), and
        results that all succeeded while the last critical section had executor slots to spare
        (the tasks' own ``task_instance:success`` told it already; the next loop takes the
        results)."""
        if arrival.payload == notify.WORKLOADS_SUCCEEDED:
            return self._critical_capped
        return self._own is None or not self._own.echo(arrival)

    def _take_news(self) -> None:
        """Act on what arrived since the last call: task instances that ended, went up for retry
        or reschedule, or were scheduled by someone else (the triggerer) make the critical
        section due; an asset event that queued a DAG makes the creation step due."""
        assert self._waker is not None
        payloads = [arrival.payload for arrival in self._waker.take_arrived() if self._news(arrival)]
        if notify.task_instances_changed(payloads):
            self._critical_due = True
        if notify.assets_queued(payloads):
            self._creation_due = True

    def _do_scheduling(self, session: Session) -> int:
        self._loop_ended()
        if self._loop.total:  # the previous loop (incl. its executor events) did work
            self.backoff.busy(time.monotonic())
        self._loop = LoopWork()
        self._loop_started = time.monotonic()
        if self._waker is not None:
            self._waker.discard_pending()  # this loop sees what they announce
            self._take_news()  # e.g. slots freed while the previous loop ran
        self._begin_batch()
        try:
            with self._loop.watching(session):
                self._loop.tis_queued = super()._do_scheduling(session)
            follow_up = self._follow_up_due(session)
        finally:
            self._creation_due |= bool(self._loop.dags_unblocked)
            self._begin_batch()  # lookups between loops ask the database again
        self.dag_runs_created_total += self._loop.dag_runs_created
        self._log_stats()
        return self._loop.total if follow_up else 0

    def _follow_up_due(self, session: Session) -> bool:
        """Whether the next loop must start at once instead of after the idle wait.

        Without notifications (no LISTEN, no wake-up triggers): after every loop that did work,
        as the stock loop. With them, the idle wait ends at once on any notification other than
        this scheduler's own echoes (:meth:`_news`): a task instance that ended (also one this
        loop ended itself, an EmptyOperator or a trigger rule), a run queued through the API, a
        worker's result. So only what no notification announces makes the next loop due: a step
        that ran out of its batch or budget (:attr:`~.work.LoopWork.capped`), a critical
        section that queued all it could take, runs this loop created (a catching-up DAG is due
        again), and a run that ended while other runs are queued (``max_active_runs`` may now
        let one start)."""
        loop = self._loop
        if not loop.total:
            return False
        if not self._notified():
            return True
        if loop.capped or loop.critical_capped or loop.dag_runs_created:
            return True
        return bool(loop.dag_runs_ended) and queued_runs.any_queued_run_due(session)

    def _loop_ended(self) -> None:
        """The loop the last ``_do_scheduling`` began is over (the next one begins, or the stock
        loop reads the idle sleep, which is not part of it): count it and send its metrics. Its
        work (:class:`~.work.LoopWork`) includes the executor events it processed."""
        started, self._loop_started = self._loop_started, None
        if started is None:
            return
        busy = bool(self._loop.total)
        duration = time.monotonic() - started
        self._stats["loops"] += 1
        self._stats["busy_loops"] += busy
        metrics.scheduler_loop(duration, busy, self._loop.dag_runs_created)
        if self._loop_record is not None:
            self._loop_record_writer.write(self._loop_record.add(duration, busy))

    def _log_stats(self, every: float = 60.0) -> None:
        """One INFO line a minute: loops, busy loops, NOTIFY wake-ups, runs created, cache."""
        now = time.monotonic()
        if now - self._stats_logged_at < every:
            return
        self.log.info(
            "Kestra scheduler: %d loops (%d busy) in %.0fs, %d NOTIFY wake-ups, %d dag runs created "
            "so far (%d in bulk), DAG cache %d hits / %d misses",
            self._stats["loops"],
            self._stats["busy_loops"],
            now - self._stats_logged_at,
            self._waker.wakeups if self._waker else 0,
            self.dag_runs_created_total,
            self.dag_runs_created_in_bulk,
            self.dag_cache.hits,
            self.dag_cache.misses,
        )
        self._stats.update(loops=0, busy_loops=0)
        self._stats_logged_at = now

    def _process_executor_events(self, executor: BaseExecutor, session: Session) -> int:
        """Counts the events taken from the buffer as work. The stock loop skips its idle sleep
        when this returns more than 0: it does so when the freed executor slots may matter
        (the last critical section ran out of them, or nothing notifies). A state this step
        changes itself (a task that failed outside its process) notifies and ends the wait."""
        events = len(executor.event_buffer)
        super()._process_executor_events(executor=executor, session=session)
        self._loop.executor_events += events
        if events and (self._critical_capped or not self._notified()):
            # Executor slots were freed. The task instances' own state changes notify (with
            # LISTEN), so the freed slots matter only to a pass that ran out of them.
            self._critical_due = True
            return events
        return 0

    def _critical_section_enqueue_task_instances(self, session: Session) -> int:
        """The stock critical section (several queries and a pool-row lock) runs in every loop;
        this scheduler loops far more often, so it runs it only when task instances may have
        become queueable: this loop changed task instance or dag run states; a NOTIFY announced
        a task instance that ended, went up for retry or reschedule (slots freed) or was
        scheduled by the triggerer; the previous pass queued as many as it could take (more may
        be waiting) and executor slots were freed since; another replica held the lock; or
        ``[kestra] scheduler_recheck_interval`` has passed. Without LISTEN (or the wake-up
        triggers) every executor event and every pass that queued some make it due, as before
        notifications could tell what changed. Within the interval, a due pass in a loop that
        scheduled no task instance itself first asks whether any is scheduled at all
        (:mod:`.scheduled_tis`)."""
        now = time.monotonic()
        periodic = now - self._critical_at >= self._recheck
        if not (
            self._critical_due
            or self._loop.ti_updates
            or self._loop.dag_runs_changed
            or self._loop.dag_runs_created
            or periodic
        ):
            return 0
        if not periodic and not self._loop.ti_updates and not scheduled_tis.any_scheduled(session):
            # Nothing to queue (a loop woken by tasks that ended, say); the pass itself, with the
            # stock gauges it sets, still runs once per interval.
            self._critical_due = self._critical_capped = self._loop.critical_capped = False
            return 0
        self._critical_at = now
        self._critical_due = False
        limit = self._critical_section_limit()
        try:
            queued = super()._critical_section_enqueue_task_instances(session)
        except Exception:
            self._critical_due = True  # e.g. another replica holds the pool lock: try again
            raise
        self._critical_capped = limit <= 0 or queued >= limit
        self._loop.critical_capped = self._critical_capped
        if self._critical_capped or (queued and not self._notified()):
            self._critical_due = True  # more may be waiting
        return queued

    def _critical_section_limit(self) -> int:
        """How many task instances the stock critical section may queue now (its ``max_tis``)."""
        free = self._parallelism - sum(executor.slots_occupied for executor in self.executors)
        per_query = self.job.max_tis_per_query
        return free if per_query == 0 else min(per_query, free)

    # -- the stock loop's fixed checks ----------------------------------------------------------
    def _enqueue_executor_callbacks(self, session: Session) -> None:
        """The stock query for pending executor callbacks, at most once per
        ``[kestra] scheduler_recheck_interval`` instead of in every loop."""
        if self._periodic_due("executor_callbacks"):
            super()._enqueue_executor_callbacks(session)

    def _enqueue_connection_tests(self, *, session: Session) -> None:
        """The stock dispatch of connection tests requested through the API (two counts and a
        locked select), at most once per ``[kestra] scheduler_recheck_interval``."""
        if self._periodic_due("connection_tests"):
            super()._enqueue_connection_tests(session=session)

    def _periodic_due(self, check: str) -> bool:
        """Whether ``check`` runs in this loop: the stock loop runs it in every loop, about once
        a second when idle; this one loops far more often when busy, so it keeps that cadence
        (every loop when the interval is 0)."""
        now = time.monotonic()
        if now - self._periodic_at.get(check, float("-inf")) < self._recheck:
            return False
        self._periodic_at[check] = now
        return True

    # -- DAG lookups ---------------------------------------------------------------------------
    def _get_current_dag(self, dag_id: str, session: Session) -> SerializedDAG | None:
        dag = self._batch.dags.get(dag_id)
        if dag is not None:
            return dag
        try:
            return self.dag_cache.get_latest(dag_id, session)
        except Exception:
            self.log.exception("Failed to deserialize DAG '%s'", dag_id)
            return None

    # -- dag run creation ----------------------------------------------------------------------
    def _create_dagruns_for_dags(self, guard: CommitProhibitorGuard, session: Session) -> None:
        if not self._dag_run_creation_due():
            return
        partition_dag_ids = self._create_dagruns_for_partitioned_asset_dags(session)
        ready = due_dags.ready_asset_triggered_dags(session, self.dag_cache, self._asset_memo)
        asset_dag_ids = set(ready) - partition_dag_ids
        if asset_dag_ids:
            asset_dags = due_dags.lock_dags(session, asset_dag_ids)
            self._with_prefetched(asset_dags, session, self._create_asset_runs)
        guard.commit()

        def process(batch: list[DagModel]) -> None:
            timed = [d for d in batch if d.dag_id not in partition_dag_ids and d.dag_id not in asset_dag_ids]
            self._create_timed_runs(timed, guard, session)
            guard.commit()  # release this batch's row locks before taking the next one

        created = take_in_batches(
            take=lambda limit: due_dags.lock_due_dags(session, limit),
            process=process,
            key=lambda dag_model: dag_model.dag_id,
            batch_size=self._batch_size,
            budget=self._loop_budget,
        )
        self._loop.capped |= created.out_of_budget
        # DAGs that got runs may be due again (catching up); a step out of budget left some.
        self._creation_due = bool(created.processed or asset_dag_ids or partition_dag_ids)

    def _dag_run_creation_due(self) -> bool:
        """Whether this loop looks for DAGs that need a run. The stock loop does in every loop,
        about once a second when idle: three queries and a commit that find nothing in almost
        every loop of a busy scheduler looping on notifications. This one does when something
        may have made a DAG ready before its due time passed: an asset event queued a consumer
        (NOTIFY), a loop cleared a DAG's ``exceeds_max_non_backfill`` (a run ended below
        ``max_active_runs``), or the previous creation step created runs or ran out of budget;
        otherwise once per ``[kestra] scheduler_recheck_interval``, which is when a DAG whose
        ``next_dagrun_create_after`` passed (or that was unpaused or parsed anew) gets its run,
        as within the stock idle sleep. Without notifications, in every loop."""
        if not (self._creation_due or not self._notified() or self._periodic_due("dag_run_creation")):
            return False
        self._periodic_at["dag_run_creation"] = time.monotonic()
        self._creation_due = False
        return True

    def _create_timed_runs(
        self, dag_models: list[DagModel], guard: CommitProhibitorGuard, session: Session
    ) -> None:
        """Plain due DAGs get their runs in one INSERT for the runs and one for their TIs
        (:mod:`.bulk_runs`); everything else goes through the stock ``_create_dag_runs``."""
        if not dag_models:
            return
        stock: list[DagModel] = list(dag_models)
        if self._bulk_create:
            try:
                dags = self.dag_cache.get_latest_with_versions((d.dag_id for d in dag_models), session)
                plan = bulk_runs.split(dag_models, dags, session)
            except Exception:
                self.log.exception("Could not plan bulk dag run creation; using the stock path")
            else:
                stock = plan.stock
                if plan.bulk:
                    stock += self._create_in_bulk(plan.bulk, guard, session)
        self._with_prefetched(stock, session, self._create_dag_runs)

    def _create_in_bulk(
        self, plan: list[tuple[DagModel, SerializedDAG, Any]], guard: CommitProhibitorGuard, session: Session
    ) -> list[DagModel]:
        """Write the runs of ``plan`` in a SAVEPOINT, then move each DAG's next-run fields on as the
        stock path does. Returns the DAGs to hand to the stock path (all of them if writing failed)."""
        savepoint = session.begin_nested()
        try:
            created = bulk_runs.create_runs(plan, creating_job_id=self.job.id, session=session)
            # Releasing a SAVEPOINT is not a commit (the batch's row locks stay held), but
            # SQLAlchemy reports it to the stock commit guard as one: tell the guard it is expected.
            guard.expected_commit = True
            savepoint.commit()
        except Exception:
            if savepoint.is_active:
                savepoint.rollback()
            self.log.exception("Bulk dag run creation failed; creating this batch one by one")
            return [model for model, _, _ in plan]
        finally:
            guard.expected_commit = False
        active = DagRun.active_runs_of_dags(
            dag_ids=[model.dag_id for model, _, _ in created], exclude_backfill=True, session=session
        )
        self.dag_runs_created_in_bulk += len(created)
        self._loop.dag_runs_created += len(created)  # inserted without a flush the loop could see
        memo = NextRunMemo()
        for model, dag, run in created:
            model.calculate_dagrun_date_fields(dag=memo.view(dag), reference_run=run)
            model.exceeds_max_non_backfill = active.get(model.dag_id, 0) >= (model.max_active_runs or 0)
        return []

    # -- starting and examining dag runs -------------------------------------------------------
    def _start_queued_dagruns(self, session: Session) -> None:
        """The stock method, given up to ``[kestra] scheduler_dagrun_batch_size`` queued runs per
        call by :func:`.queued_runs.lock_queued_runs_to_start` (the stock query takes
        ``max_dagruns_per_loop_to_schedule`` and slows down with every running run while many
        are queued); call it again while it started a full batch and this step's loop budget
        lasts. Not called when no run is queued (the stock method would only count the running
        runs of every DAG)."""
        if not queued_runs.any_queued_run_due(session):
            return
        deadline = time.monotonic() + self._loop_budget
        while True:
            runs = queued_runs.lock_queued_runs_to_start(session, self._batch_size)
            if not runs:  # all locked by another scheduler, or their DAGs at max_active_runs
                return
            probe = LoopWork()  # counts the runs this call moved to RUNNING
            self._begin_batch()
            with probe.watching(session), queued_runs.stock_start_gets(runs, session):
                super()._start_queued_dagruns(session)
                session.flush()
            if probe.dag_runs_changed < self._batch_size:
                return
            if time.monotonic() >= deadline:
                self._loop.capped = True  # a full batch: more may be startable
                return

    def _schedule_all_dag_runs(
        self, guard: CommitProhibitorGuard, dag_runs: Iterable[DagRun], session: Session
    ) -> list[tuple[DagRun, DagCallbackRequest | None]]:
        """The stock loop examines one batch of ``max_dagruns_per_loop_to_schedule`` running runs,
        never-examined first. With its own loop budget, this step then alternates two batches
        until both are empty or the budget is spent (at least one round), each run at most once
        per loop:

        * runs with a task instance that ended since their last decision
          (:mod:`.running_runs`), so finishing runs are not starved by the never-examined runs
          that bulk creation keeps starting;
        * the stock query's next batch, while the previous one was full of never-examined runs.

        Runs examined before are looked at again one stock batch per loop, as stock: with
        thousands of runs that wait (deferred tasks, long tasks), examining them all again every
        ``scheduler_recheck_interval`` would keep the scheduler and the database busy with runs
        in which nothing changed (what changes a run, a task instance ending, brings it into the
        ended-task batch at once).
        """
        deadline = time.monotonic() + self._loop_budget
        size = DagRun.DEFAULT_DAGRUNS_TO_EXAMINE
        fetched = list(dag_runs)
        batch = self._due_for_recheck(fetched)
        seen = {run.id for run in batch}  # before the stock commit expires the objects
        stock_left = _more_never_examined(fetched, size)
        callbacks = self._examine_batch(guard, batch, session)
        while True:  # at least one batch of ended runs per loop, whatever the budget
            ended = running_runs.lock_runs_with_ended_tis(session, size, exclude=seen)
            callbacks += self._examine(guard, ended, seen, session)
            if stock_left:
                fetched = list(DagRun.get_running_dag_runs_to_examine(session=session))
                fresh = self._due_for_recheck([run for run in fetched if run.id not in seen])
                stock_left = _more_never_examined(fetched, size) and bool(fresh)
                callbacks += self._examine(guard, fresh, seen, session)
            if not ended and not stock_left:
                return callbacks
            if time.monotonic() >= deadline:
                self._loop.capped |= len(ended) >= size or stock_left  # more may be waiting
                return callbacks

    def _due_for_recheck(self, runs: list[DagRun]) -> list[DagRun]:
        """Of a stock batch (never-examined first, then longest unexamined), the runs to examine:
        never examined, or not within ``[kestra] scheduler_recheck_interval``. A run examined
        more recently has nothing new unless one of its task instances ended, and those runs are
        taken by the ended-task batch."""
        if self._recheck <= 0:
            return runs
        cutoff = timezone.utcnow() - timedelta(seconds=self._recheck)
        return [
            run
            for run in runs
            if run.last_scheduling_decision is None or run.last_scheduling_decision <= cutoff
        ]

    def _examine(
        self, guard: CommitProhibitorGuard, batch: list[DagRun], seen: set[int], session: Session
    ) -> list[tuple[DagRun, DagCallbackRequest | None]]:
        if not batch:
            return []
        seen.update(run.id for run in batch)
        self._stamp_team_names(batch, session)
        return self._examine_batch(guard, batch, session)

    def _examine_batch(
        self, guard: CommitProhibitorGuard, batch: list[DagRun], session: Session
    ) -> list[tuple[DagRun, DagCallbackRequest | None]]:
        """The stock ``_schedule_all_dag_runs`` for ``batch``, with the batch's ``dag`` rows and
        task instances loaded first, one query each. The stock code reads each run's row with
        ``session.get``; the previous batch's commit expired them, so each was reloaded with its
        own query. The session only keeps objects something refers to: hold the rows until the
        batch is done. Each run's decision then reads its task instances from
        :mod:`.examined_tis` instead of one query per run."""
        examined = self._begin_batch().examined
        for run in batch:
            examined.setdefault(run.dag_id, []).append(run)
        dag_models = running_runs.load_dag_models(examined.keys(), session)
        tis = examined_tis.load_task_instances(batch, session)
        with examined_tis.serving(batch, tis, session), short_circuited.watching(batch):
            callbacks = super()._schedule_all_dag_runs(guard, batch, session)
        del dag_models  # held until here on purpose
        return callbacks

    def _schedule_dag_run(self, dag_run: DagRun, session: Session) -> DagCallbackRequest | None:
        """The stock examination, done again at once while it set EmptyOperator task instances to
        ``success`` on the spot and the run is still running (:mod:`.short_circuited`): what
        follows them is decided in this loop, not the next, and a run they end is marked
        finished now. Each pass ends at least one more task instance, so there are at most as
        many passes as the DAG has tasks."""
        short_circuited.take(dag_run)  # nothing left from an attempt the batch's retry rolled back
        callback = super()._schedule_dag_run(dag_run, session)
        passes_left = len(getattr(dag_run.dag, "task_dict", ()))
        while passes_left > 0 and dag_run.state == DagRunState.RUNNING:
            handed = short_circuited.take(dag_run)
            if not handed:
                break
            session.flush()  # nothing pending is lost by the expiry below
            for ti in handed:  # the UPDATE changed their rows: read them anew
                session.expire(ti)
            passes_left -= 1
            callback = super()._schedule_dag_run(dag_run, session) or callback
        return callback

    def _verify_integrity_if_dag_changed(self, dag_run: DagRun, session: Session) -> bool:
        """The stock method, with the DAG's newest version taken from the batch's one query
        (:meth:`~.dag_cache.KestraDagCache.newest_version_id`) instead of one query per run."""
        newest = self.dag_cache.newest_version_id(dag_run.dag_id, session)
        if newest is None:
            return False
        batch = self._batch
        if batch.runs_on_newest is None:  # first run of this batch: ask for all its runs at once
            runs = [
                (d, r, v)
                for d, r in loaded_runs(session)
                if (v := self.dag_cache.newest_version_id(d, session))
            ]
            batch.runs_on_newest = running_runs.runs_with_tis_of_versions(session, runs)
        if (dag_run.dag_id, dag_run.run_id) in batch.runs_on_newest:
            return True
        examined_tis.forget(dag_run)  # verify_integrity may add task instances: read them anew
        return super()._verify_integrity_if_dag_changed(dag_run, session)

    def _set_exceeds_max_active_runs(
        self, *, dag_model: DagModel, active_non_backfill_runs: int | None = None, session: Session
    ) -> None:
        """Stock counts the DAG's active runs with one query per run that ends. While a batch is
        examined, the first run that ends counts them for every DAG of the batch (one query, with
        that run's end flushed); for a later one, the runs of its DAG in the batch that ended
        since are taken off that count. The comparison is the stock one."""
        batch = self._batch
        runs = batch.examined.get(dag_model.dag_id)
        if active_non_backfill_runs is None and runs is not None:
            if batch.active_runs is None:
                batch.active_runs = DagRun.active_runs_of_dags(
                    dag_ids=batch.examined.keys(), exclude_backfill=True, session=session
                )
                batch.ended_before_count = frozenset(
                    run.id for dag_runs in batch.examined.values() for run in dag_runs if _ended(run)
                )
            ended_since = sum(1 for run in runs if run.id not in batch.ended_before_count and _ended(run))
            active_non_backfill_runs = batch.active_runs.get(dag_model.dag_id, 0) - ended_since
        super()._set_exceeds_max_active_runs(
            dag_model=dag_model, active_non_backfill_runs=active_non_backfill_runs, session=session
        )

    def _begin_batch(self, dags: dict[str, SerializedDAG] | None = None) -> Batch:
        """A new :class:`~.batch.Batch` (with ``dags`` already loaded): the previous batch's
        answers (its DAGs, the newest DAG versions, the runs already on them) are forgotten."""
        self.dag_cache.forget_run_versions()
        self._batch = Batch(dags=dags or {})
        return self._batch

    def _create_asset_runs(self, dag_models: list[DagModel], session: Session) -> None:
        self._create_dag_runs_asset_triggered(dag_models=dag_models, session=session)

    def _with_prefetched(self, dag_models: list[DagModel], session: Session, create: Any) -> None:
        """Load the batch's DAGs with one cache lookup, then let the stock code create the runs."""
        if not dag_models:
            return
        try:
            dags = self.dag_cache.get_latest_many((d.dag_id for d in dag_models), session)
        except Exception:
            self.log.exception("Failed to load DAGs of a batch; falling back to one by one")
            dags = {}
        self._begin_batch(dags)
        try:
            create(dag_models, session)
        finally:
            self._begin_batch()
