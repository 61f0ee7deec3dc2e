"""The KestraExecutor worker: claim a batch with one query, start it on a thread pool, re-poll.

One worker = one poll thread + one result thread + one heartbeat thread (+ a LISTEN thread on
PostgreSQL) in front of a pre-forked :class:`RunnerPool`. It runs embedded in the scheduler
process (``[kestra] embedded_worker``) or alone (``airflow kestra worker``); the code is the same.

Poll loop::

    free = idle runners; if none, wait until a task ends
    rows = claim(limit=min(poll_size, free))        # ONE statement, commits the claims
    rows -> parse workload + hand to a runner, on the thread pool; wait for the batch
    rows? poll again at once : sleep the back-off step (woken early by wake() / NOTIFY)
    database error? log (a streak once, see FailureLog), sleep max_poll_interval, poll again

Fencing: a worker claims and records results only under its own registered id while that id is
``running``. When its heartbeat finds it was declared dead (it was frozen, or cut off from the
database, for longer than ``worker_timeout``), it registers anew, takes over the claims the reaper
left it (tasks that kept running and heartbeating) and kills the runners of every other task it
holds: those were released to other workers or failed, and must not go on here.

Fleet commands change a worker's row: ``maintenance`` (the claim statement claims nothing for a
worker that is not ``running``; its tasks go on) and ``draining`` (the heartbeat sees it, the
worker stops claiming, lets its tasks end and ``airflow kestra worker`` exits).
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

from sqlalchemy.orm import Session

from airflow_kestra_provider import __version__, settings
from airflow_kestra_provider.metrics import WorkerMetrics
from airflow_kestra_provider.models.tables import LIVE_WORKER_STATES
from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import ClaimedWorkload, TaskResult
from airflow_kestra_provider.worker.backoff import Backoff
from airflow_kestra_provider.worker.failures import FailureLog
from airflow_kestra_provider.worker.reaper import Reaper
from airflow_kestra_provider.worker.runner_pool import Job, RunnerPool
from airflow_kestra_provider.worker.wakeup import Listener
from airflow_kestra_provider.worker.workloads import from_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    embedded: bool
    name: str
    concurrency: int
    thread_count: int
    poll_size: int
    queues: frozenset[str]  # empty: every queue
    min_poll_interval: float
    max_poll_interval: float
    poll_switch_interval: float
    switch_steps: int
    listen_notify: bool
    heartbeat_interval: float
    worker_timeout: float
    execution_api_retry_window: float

    @classmethod
    def from_config(
        cls,
        embedded: bool,
        concurrency: int | None = None,
        queues: str | None = None,
        name: str | None = None,
    ) -> WorkerSettings:
        """Read and validate the ``[kestra]`` options (raises KestraConfigError naming the option);
        ``concurrency``, ``queues`` and ``name`` are ``airflow kestra worker``'s options."""
        settings.validate_all()
        minimum, maximum = settings.min_poll_interval(), settings.max_poll_interval()
        if maximum < minimum:
            raise settings.KestraConfigError(
                f"[kestra] max_poll_interval = {maximum} is invalid: it must be >= "
                f"[kestra] min_poll_interval ({minimum})"
            )
        if name is not None and not name.strip():
            raise settings.KestraConfigError("argument --name: must not be empty")
        return cls(
            embedded=embedded,
            name=name.strip() if name is not None else default_worker_name(embedded),
            concurrency=concurrency or settings.worker_concurrency(),
            thread_count=settings.thread_count(),
            poll_size=settings.poll_size(),
            queues=settings.worker_queues(embedded, queues),
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


def this_host() -> str:
    """This host's name as ``[core] hostname_callable`` gives it (what task instances record, and
    where the api-server fetches their logs from)."""
    from airflow.utils.net import get_hostname

    return get_hostname()


def default_worker_name(embedded: bool) -> str:
    """This host's name; the embedded worker's ends in ``-embedded`` (the scheduler's worker,
    never addressed as a standalone one)."""
    hostname = this_host()
    return f"{hostname}-embedded" if embedded else hostname


class WorkerNameTaken(settings.KestraConfigError):
    """Another live worker already goes by this name."""


def check_name_free(session: Session, name: str, worker_timeout: float) -> None:
    """Refuse a name a live worker holds: one that heartbeats within ``worker_timeout``, unless
    it is a process of this host that no longer exists (this worker's previous run, killed)."""
    row = claims.worker_named(session, name)
    if row is None or row.state not in LIVE_WORKER_STATES or row.heartbeat_age > worker_timeout:
        return
    if row.hostname == this_host() and not _pid_exists(row.pid):
        return
    raise WorkerNameTaken(
        f"a worker named {name!r} is running (host {row.hostname}, pid {row.pid}, heartbeat "
        f"{row.heartbeat_age:.0f}s ago): give this one another --name"
    )


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


class KestraWorker:
    """Claims queued task instances from the database and runs them in pre-forked runners."""

    def __init__(self, config: WorkerSettings, server: str | None = None) -> None:
        self.config = config
        self.server = server
        self.id = _new_worker_id()
        self.stats = WorkerStats()
        self.metrics = WorkerMetrics(config.name)
        # set when a fleet command asked this worker to drain (``airflow kestra workers drain``)
        self.drain_requested = threading.Event()
        self.pool = RunnerPool(config.concurrency, server, retry_window=config.execution_api_retry_window)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._results_stop = threading.Event()
        self._heartbeat_stop = threading.Event()
        self._failed_starts: deque[TaskResult] = deque()
        self._pending: list[TaskResult] = []
        self._threads: list[threading.Thread] = []
        self._batch_pool: ThreadPoolExecutor | None = None
        self._listener: Listener | None = None
        self._poll_connection = claims.PollConnection()  # the poll thread's own
        self._id_lock = threading.Lock()  # the id changes when the worker registers anew
        self._claimed_at = time.monotonic()  # when the last claim statement returned
        self._state = "running"  # as the last heartbeat read it

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        require_postgres()
        ensure_schema()
        if not self.config.embedded:
            with claims.session_scope() as session:
                check_name_free(session, self.config.name, self.config.worker_timeout)
        # Start the forkserver (its environment is scrubbed for that moment) and fork the
        # runners before this process starts any thread of ours.
        self.pool.start()
        with claims.session_scope() as session:
            self._register(session, self.id)
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
            "kestra worker %s (%s) started: %d runners, %d batch threads, poll size %d, queues %s",
            self.config.name,
            self.id,
            self.config.concurrency,
            self.config.thread_count,
            self.config.poll_size,
            ",".join(sorted(self.config.queues)) or "(every queue)",
        )

    def _register(self, session: Session, worker_id: str) -> None:
        claims.register_worker(
            session,
            worker_id=worker_id,
            name=self.config.name,
            hostname=this_host(),
            pid=os.getpid(),
            embedded=self.config.embedded,
            concurrency=self.config.concurrency,
            queues=self.config.queues,
            version=__version__,
        )

    def wake(self) -> None:
        """Make an idle poller poll now (called by the executor and by NOTIFY)."""
        self.stats.wakeups += 1
        self._wake.set()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, drain: bool = True, timeout: float = 60.0, drain_timeout: float | None = None) -> None:
        """Stop claiming; ``drain`` lets running tasks finish for up to ``drain_timeout`` seconds
        (default ``timeout``; ``math.inf``: until they end or :meth:`RunnerPool.cut_drain`), then
        kills them. The worker keeps heartbeating until its last task has ended, so it is never
        reaped while draining."""
        self._stopping.set()
        self._wake.set()
        poll, results, heartbeat = self._threads or (None, None, None)
        if poll is not None:
            poll.join(timeout)
        self._results_stop.set()
        if results is not None:
            results.join(timeout)
        self._pending.extend(
            self.pool.stop(drain=drain, timeout=timeout if drain_timeout is None else drain_timeout)
        )
        self._take_failed_starts()
        self._heartbeat_stop.set()
        if self._listener is not None:
            self._listener.stop()
        if heartbeat is not None:
            heartbeat.join(timeout)
        if self._batch_pool is not None:
            self._batch_pool.shutdown(wait=True)
        try:
            self._record(self._pending)
            with claims.session_scope() as session:
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
        try:
            self._poll_until_stopped(backoff, failures)
        finally:
            self._poll_connection.close()

    def _poll_until_stopped(self, backoff: Backoff, failures: FailureLog) -> None:
        config = self.config
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
                self.metrics.poll_failed()
                failures.failed(backoff.error_interval())
                self._stopping.wait(backoff.error_interval())
                continue
            failures.succeeded()
            now = time.monotonic()
            if rows:
                backoff.busy(now)
                self._start_batch(rows)
                continue  # immediate re-poll
            self._wake.wait(self._idle_wait(backoff, now))

    def _idle_wait(self, backoff: Backoff, now: float) -> float:
        """After an empty poll: the back-off interval, or ``max_poll_interval`` at once while
        LISTEN is in effect (new workloads, and claims released by a stopping or dead worker,
        notify and wake this loop; the poll then only finds what a lost notification missed)."""
        return backoff.idle_interval(now, notified=self._listener is not None and self._listener.listening)

    def _claim(self, limit: int) -> list[ClaimedWorkload]:
        began = time.monotonic()
        rows = self._poll_connection.claim(worker_id=self.id, limit=limit, queues=self.config.queues)
        self._claimed_at = time.monotonic()
        self.metrics.polled(self._claimed_at - began, len(rows))
        self.stats.polls += 1
        if rows:
            self.stats.claimed += len(rows)
            self.stats.last_batch = [*self.stats.last_batch[-9:], len(rows)]
        else:
            self.stats.empty_polls += 1
        return rows

    def _start_batch(self, rows: list[ClaimedWorkload]) -> None:
        """Parse and hand every claimed row to a runner on the thread pool; wait for the batch."""
        assert self._batch_pool is not None
        for failure in self._batch_pool.map(self._start_one, rows):
            if failure is not None:
                self._failed_starts.append(failure)

    def _start_one(self, row: ClaimedWorkload) -> TaskResult | None:
        try:
            workload = from_row(row)
        except Exception as err:
            log.exception("could not read workload %s of task instance %s", row.id, row.ti_id)
            return TaskResult(row.id, "failed", None, f"workload: {err}")
        try:
            handed = self.pool.submit(Job(row.id, workload))
        except Exception as err:
            log.exception("could not hand task instance %s to a runner", row.ti_id)
            return TaskResult(row.id, "failed", None, f"runner hand-off: {err}")
        if not handed:
            # Not started: give the claim back rather than failing a try that never ran.
            return TaskResult(row.id, "release", None, "no idle runner (worker stopping)")
        self.metrics.started(time.monotonic() - self._claimed_at)
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
                self._record(self._pending)
                self.stats.finished += len(self._pending)
                self._pending = []
                self._wake.set()  # runners are free again
                failures.succeeded()
            except Exception:
                # The results stay in _pending and are recorded by the next attempt.
                failures.failed(self.config.max_poll_interval)
                self._results_stop.wait(self.config.max_poll_interval)

    def _record(self, results: list[TaskResult]) -> None:
        """Write results under this worker's current id (one statement each for ends and releases)."""
        released = [r.workload_id for r in results if r.result == "release"]
        ended = [r for r in results if r.result != "release"]
        with self._id_lock, claims.session_scope() as session:
            claims.finish(session, self.id, ended)
            claims.release(session, self.id, released)
            if released:
                claims.notify(session)  # wake the other workers: these tasks wait for a runner

    # -- heartbeat and reaping ------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        reaper = Reaper(self.config.worker_timeout, self.config.heartbeat_interval)
        failures = FailureLog(log, f"kestra worker {self.id}: heartbeat")
        while not self._heartbeat_stop.wait(self.config.heartbeat_interval):
            try:
                with claims.session_scope() as session:
                    state = claims.heartbeat(session, self.id)
                if state is None:
                    self._register_anew()
                else:
                    self._follow_state(state)
                busy = self.pool.busy
                self.metrics.slots(busy, self.config.concurrency - busy)
                failures.succeeded()
                reaper.database_ok()
                if not self._stopping.is_set() and reaper.due():
                    with claims.session_scope() as session:
                        reaper.reap(session, f"kestra worker {self.id}")
            except Exception:
                reaper.database_failed()
                failures.failed(self.config.heartbeat_interval)

    def _follow_state(self, state: str) -> None:
        """React to a state a fleet command set (the claim statement already claims nothing for a
        worker that is not running)."""
        if state == self._state:
            return
        log.warning("kestra worker %s: state %s -> %s", self.config.name, self._state, state)
        self._state = state
        if state == "draining":
            self.drain_requested.set()
        elif state == "running":
            self._wake.set()  # out of maintenance: claim at once

    def _register_anew(self) -> None:
        """Declared dead meanwhile: register under a new id, keep what is still ours, stop the rest."""
        with self._id_lock:
            old_id, new_id = self.id, _new_worker_id()
            with claims.session_scope() as session:
                self._register(session, new_id)
                kept = claims.take_over(session, old_id, new_id)
            self.id = new_id
            self._state = "running"
        killed = self.pool.kill_jobs(self.pool.running_workloads() - kept)
        log.error(
            "kestra worker %s was declared dead (silent for more than %.0fs); registered anew as %s, "
            "kept %d running task(s), killed %d that had been handed to other workers or failed",
            old_id,
            self.config.worker_timeout,
            new_id,
            len(kept),
            killed,
        )


def _new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
