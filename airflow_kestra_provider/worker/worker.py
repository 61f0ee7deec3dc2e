"""The KestraExecutor worker: claim a batch with one query, start it on a thread pool, re-poll.

One worker = one poll thread + one result thread + one heartbeat thread (+ a LISTEN thread on
PostgreSQL) in front of a pre-forked :class:`RunnerPool`. It runs embedded in the scheduler
process (``[kestra] embedded_worker``) or alone (``airflow kestra worker``); the code is the same.

Poll loop::

    free = idle runners; if none, wait until a task ends
    rows = claim(limit=min(poll_size, free))        # ONE statement, commits the claims
    rows -> build workload + hand to a runner, on the thread pool; wait for the batch
    rows? poll again at once : sleep the back-off step (woken early by wake() / NOTIFY)
    database error? log (a streak once, see FailureLog), sleep max_poll_interval, poll again
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from airflow_kestra_provider import settings
from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import ClaimedTask, TaskResult
from airflow_kestra_provider.worker.backoff import Backoff
from airflow_kestra_provider.worker.failures import FailureLog
from airflow_kestra_provider.worker.runner_pool import Job, RunnerPool
from airflow_kestra_provider.worker.wakeup import Listener
from airflow_kestra_provider.worker.workloads import WorkloadBuilder

log = logging.getLogger(__name__)

KESTRA_EXECUTOR_PATH = "airflow_kestra_provider.executors.kestra_executor.KestraExecutor"
PURGE_RETENTION = 3600.0  # seconds a reported claim (or a stopped worker's row) is kept


@dataclass(frozen=True)
class WorkerSettings:
    embedded: bool
    concurrency: int
    thread_count: int
    poll_size: int
    queues: frozenset[str]
    min_poll_interval: float
    max_poll_interval: float
    poll_switch_interval: float
    switch_steps: int
    listen_notify: bool
    heartbeat_interval: float
    worker_timeout: float
    execution_api_retry_window: float

    @classmethod
    def from_config(cls, embedded: bool, concurrency: int | None = None) -> WorkerSettings:
        """Read and validate the ``[kestra]`` options (raises KestraConfigError naming the option)."""
        settings.validate_all()
        minimum, maximum = settings.min_poll_interval(), settings.max_poll_interval()
        if maximum < minimum:
            raise settings.KestraConfigError(
                f"[kestra] max_poll_interval = {maximum} is invalid: it must be >= "
                f"[kestra] min_poll_interval ({minimum})"
            )
        return cls(
            embedded=embedded,
            concurrency=concurrency or settings.worker_concurrency(),
            thread_count=settings.thread_count(),
            poll_size=settings.poll_size(),
            queues=settings.queues(),
            min_poll_interval=minimum,
            max_poll_interval=maximum,
            poll_switch_interval=settings.poll_switch_interval(),
            switch_steps=settings.switch_steps(),
            listen_notify=settings.listen_notify(),
            heartbeat_interval=settings.worker_heartbeat_interval(),
            worker_timeout=settings.worker_timeout(),
            execution_api_retry_window=settings.execution_api_retry_window(),
        )


@dataclass
class WorkerStats:
    polls: int = 0
    empty_polls: int = 0
    claimed: int = 0
    finished: int = 0
    poll_errors: int = 0
    wakeups: int = 0
    last_batch: list[int] = field(default_factory=list)


def require_postgres() -> None:
    """The claim SQL needs PostgreSQL; fail at start naming the option otherwise."""
    from airflow import settings as airflow_settings

    engine = airflow_settings.engine
    dialect = engine.dialect.name if engine is not None else "none"
    if dialect != "postgresql":
        raise settings.KestraConfigError(
            f"[database] sql_alchemy_conn points at {dialect!r}: the KestraExecutor claims task "
            "instances with PostgreSQL row locks (FOR UPDATE SKIP LOCKED) and supports only "
            "PostgreSQL; set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN to a postgresql:// URL"
        )


def ensure_schema() -> None:
    """Stop with a clear message when ``airflow db migrate`` has not created our tables yet."""
    with claims.session_scope() as session:
        present = claims.tables_present(session)
    if not present:
        raise settings.KestraConfigError(
            "the KestraExecutor's tables (kestra_worker, kestra_task_claim) are missing from the "
            "metadata database: run `airflow db migrate` (it creates them through KestraDBManager)"
        )


def executor_routing() -> tuple[list[str], bool]:
    """Names a task instance's ``executor`` column may hold for us, and whether NULL (the
    default executor) means us."""
    from airflow.executors.executor_loader import ExecutorLoader

    names = ExecutorLoader.get_executor_names(validate_teams=False)
    ours = [n for n in names if n.module_path == KESTRA_EXECUTOR_PATH]
    accepted = {KESTRA_EXECUTOR_PATH, "KestraExecutor"} | {n.alias for n in ours if n.alias}
    is_default = bool(names) and names[0].module_path == KESTRA_EXECUTOR_PATH
    return sorted(accepted), is_default


class KestraWorker:
    """Claims queued task instances from the database and runs them in pre-forked runners."""

    def __init__(self, config: WorkerSettings, server: str | None = None) -> None:
        self.config = config
        self.server = server
        self.id = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()
        self.pool = RunnerPool(config.concurrency, server, retry_window=config.execution_api_retry_window)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._results_stop = threading.Event()
        self._failed_starts: deque[TaskResult] = deque()
        self._pending: list[TaskResult] = []
        self._threads: list[threading.Thread] = []
        self._batch_pool: ThreadPoolExecutor | None = None
        self._listener: Listener | None = None
        self._executor_names: list[str] = []
        self._default_executor = False
        self._builder: WorkloadBuilder | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        require_postgres()
        ensure_schema()
        self._executor_names, self._default_executor = executor_routing()
        self._builder = WorkloadBuilder()
        # Fork the runners before this process starts any thread of ours.
        self.pool.start()
        with claims.session_scope() as session:
            claims.register_worker(
                session,
                worker_id=self.id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                embedded=self.config.embedded,
                concurrency=self.config.concurrency,
            )
        self._batch_pool = ThreadPoolExecutor(self.config.thread_count, thread_name_prefix="kestra-batch")
        for name, target in (
            ("kestra-poll", self._poll_loop),
            ("kestra-results", self._result_loop),
            ("kestra-heartbeat", self._heartbeat_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.config.listen_notify:
            self._listener = Listener(self.wake, self.config.max_poll_interval)
            self._listener.start()
        log.info(
            "kestra worker %s started: %d runners, %d batch threads, poll size %d, executor names %s%s",
            self.id,
            self.config.concurrency,
            self.config.thread_count,
            self.config.poll_size,
            self._executor_names,
            " (+ default)" if self._default_executor else "",
        )

    def wake(self) -> None:
        """Make an idle poller poll now (called by the executor and by NOTIFY)."""
        self.stats.wakeups += 1
        self._wake.set()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, drain: bool = True, timeout: float = 60.0) -> None:
        """Stop claiming; ``drain`` lets running tasks finish, else they are killed."""
        self._stopping.set()
        self._wake.set()
        poll, results, heartbeat = self._threads or (None, None, None)
        if poll is not None:
            poll.join(timeout)
        self._results_stop.set()
        if results is not None:
            results.join(timeout)
        self._pending.extend(self.pool.stop(drain=drain, timeout=timeout))
        self._take_failed_starts()
        if self._listener is not None:
            self._listener.stop()
        if heartbeat is not None:
            heartbeat.join(timeout)
        if self._batch_pool is not None:
            self._batch_pool.shutdown(wait=True)
        try:
            with claims.session_scope() as session:
                claims.finish(session, self._pending)
                claims.stop_worker(session, self.id)
            self._pending = []
        except Exception:
            log.exception("could not record the last %d results of worker %s", len(self._pending), self.id)
        log.info("kestra worker %s stopped (%s)", self.id, self.stats)

    # -- poll loop ------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        config = self.config
        backoff = Backoff(
            config.min_poll_interval,
            config.max_poll_interval,
            config.poll_switch_interval,
            config.switch_steps,
        )
        failures = FailureLog(log, f"kestra worker {self.id}: poll")
        while not self._stopping.is_set():
            try:
                free = self.pool.free_slots
                if free <= 0:  # every runner busy: wait until a task ends (the result loop wakes us)
                    self._wake.wait(config.max_poll_interval)
                    self._wake.clear()
                    continue
                self._wake.clear()
                rows = self._claim(min(config.poll_size, free))
            except Exception:
                self.stats.poll_errors += 1
                failures.failed(backoff.error_interval())
                self._stopping.wait(backoff.error_interval())
                continue
            failures.succeeded()
            now = time.monotonic()
            if rows:
                backoff.busy(now)
                self._start_batch(rows)
                continue  # immediate re-poll
            self._wake.wait(backoff.idle_interval(now))

    def _claim(self, limit: int) -> list[ClaimedTask]:
        with claims.session_scope() as session:
            rows = claims.claim(
                session,
                worker_id=self.id,
                limit=limit,
                executor_names=self._executor_names,
                default_executor=self._default_executor,
                queues=self.config.queues,
            )
        self.stats.polls += 1
        if rows:
            self.stats.claimed += len(rows)
            self.stats.last_batch = [*self.stats.last_batch[-9:], len(rows)]
        else:
            self.stats.empty_polls += 1
        return rows

    def _start_batch(self, rows: list[ClaimedTask]) -> None:
        """Build and hand every claimed row to a runner on the thread pool; wait for the batch."""
        assert self._batch_pool is not None
        for failure in self._batch_pool.map(self._start_one, rows):
            if failure is not None:
                self._failed_starts.append(failure)

    def _start_one(self, row: ClaimedTask) -> TaskResult | None:
        try:
            assert self._builder is not None
            workload = self._builder.build(row)
        except Exception as err:
            log.exception("could not build the workload of task instance %s", row.id)
            return TaskResult(row.id, row.try_number, "failed", None, f"workload: {err}")
        try:
            handed = self.pool.submit(Job(row.id, row.try_number, workload))
        except Exception as err:
            log.exception("could not hand task instance %s to a runner", row.id)
            return TaskResult(row.id, row.try_number, "failed", None, f"runner hand-off: {err}")
        if not handed:
            return TaskResult(row.id, row.try_number, "failed", None, "no idle runner (worker stopping)")
        return None

    # -- results --------------------------------------------------------------------------
    def _take_failed_starts(self) -> None:
        while self._failed_starts:
            self._pending.append(self._failed_starts.popleft())

    def _result_loop(self) -> None:
        failures = FailureLog(log, f"kestra worker {self.id}: recording results")
        while not self._results_stop.is_set():
            try:
                self._pending.extend(self.pool.collect(timeout=0.2))
                self._take_failed_starts()
                if not self._pending:
                    continue
                with claims.session_scope() as session:
                    claims.finish(session, self._pending)
                self.stats.finished += len(self._pending)
                self._pending = []
                self._wake.set()  # runners are free again
                failures.succeeded()
            except Exception:
                # The results stay in _pending and are recorded by the next attempt.
                failures.failed(self.config.max_poll_interval)
                self._results_stop.wait(self.config.max_poll_interval)

    # -- heartbeat and reaping ------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        last_purge = 0.0
        connected_since: float | None = time.monotonic()
        failures = FailureLog(log, f"kestra worker {self.id}: heartbeat")
        while not self._stopping.wait(self.config.heartbeat_interval):
            try:
                with claims.session_scope() as session:
                    if not claims.heartbeat(session, self.id):
                        log.error("kestra worker %s was declared dead (no heartbeat for too long)", self.id)
                failures.succeeded()
                if connected_since is None:
                    connected_since = time.monotonic()
                # Judge others only after a whole worker_timeout of working database access
                # ourselves: after an outage every worker gets time to heartbeat again first.
                if time.monotonic() - connected_since < self.config.worker_timeout:
                    continue
                with claims.session_scope() as session:
                    dead, released, failed = claims.reap_dead_workers(session, self.config.worker_timeout)
                if dead:
                    log.warning(
                        "declared %d silent worker(s) dead: %d queued claim(s) released, %d failed",
                        dead,
                        released,
                        failed,
                    )
                if time.monotonic() - last_purge > 60:
                    with claims.session_scope() as session:
                        claims.purge(session, PURGE_RETENTION)
                    last_purge = time.monotonic()
            except Exception:
                connected_since = None
                failures.failed(self.config.heartbeat_interval)
