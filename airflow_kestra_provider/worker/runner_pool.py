"""A pool of pre-forked runner processes; each runs one task at a time with ``supervise_task``.

``supervise_task`` forks the task process and installs signal handlers, so it must run in a
process's main thread: each runner is a process forked once at worker start, never a fresh
interpreter per task, from a forkserver that was exec'd without the worker's secrets and has
Airflow and the task-side modules already imported (:mod:`.forkserver`). The parent talks to every runner over its own
duplex pipe, so it always knows which runner holds which task, and it watches each runner's
process sentinel, so a runner that dies is noticed at once and its task reported failed.

Nothing outlives the worker, however it dies:

* every runner watches a *lifeline* pipe whose only write end is the worker's: when the worker
  process is gone (even SIGKILLed alone) the pipe reads EOF and the runner kills its task's
  process group and exits;
* every task process is forked with a parent-death signal (SIGKILL, Linux) and its pid is kept
  in shared memory, so a runner that dies takes its task with it, and the worker kills the task's
  process group before it reports the task.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from airflow_kestra_provider.queue.claims import TaskResult
from airflow_kestra_provider.worker.forkserver import is_secret

log = logging.getLogger(__name__)


def scrub_environment(environ: dict[str, str] | Any = os.environ) -> list[str]:
    """Remove database credentials and signing secrets from ``environ``; returns removed names.
    (Runners come from a forkserver that never had them; this is a second line.)"""
    removed = [name for name in list(environ) if is_secret(name)]
    for name in removed:
        del environ[name]
    return removed


@dataclass
class Job:
    """A workload handed to a runner: the id of its ``kestra_workload`` row plus the workload."""

    workload_id: str
    workload: Any


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a freshly forked task process: get SIGKILL when the runner that forked it dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a task process leads its own), else ``pid``."""
    if pid <= 0:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _watch_lifeline(lifeline: Connection, parent_pid: int, task_pid: Any) -> None:
    """Runner thread: when the worker is gone (its end of the lifeline closed, or the forkserver
    that forked this runner, which exits with the worker, is gone), kill the running task's
    group and exit at once."""
    while True:
        gone = False
        if lifeline.poll(1.0):
            try:
                lifeline.recv_bytes()
            except (EOFError, OSError):
                gone = True
        if gone or os.getppid() != parent_pid:
            _kill_group(task_pid.value)
            os._exit(1)


def _children() -> set[int]:
    """Pids of this process's children: Linux's per-thread list (one small read; forks happen
    in the runner's main thread), else a scan of the process table."""
    try:
        children: set[int] = set()
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                children.update(int(pid) for pid in f.read().split())
        return children
    except OSError:
        import psutil

        return {p.pid for p in psutil.Process().children()}


def _remember_task_pid(task_pid: Any, known: set[int]) -> None:
    """In the runner, right after it forked: keep the new child's pid (the task process)."""
    with contextlib.suppress(Exception):
        children = _children()
        new = children - known
        if new:
            task_pid.value = max(new)
        known.clear()
        known.update(children)


def _runner_main(
    conn: Connection,
    server: str | None,
    title: str,
    retry_window: float,
    lifeline: Connection,
    task_pid: Any,
) -> None:
    """Body of one runner process: receive a workload, supervise it, send back how it ended:
    ``("exit", code, None)``, ``("not_started", None, why)`` or ``("error", None, why)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    scrub_environment()
    _set_title(f"{title} <idle>")
    known: set[int] = set()
    os.register_at_fork(
        after_in_child=_die_with_parent, after_in_parent=lambda: _remember_task_pid(task_pid, known)
    )
    threading.Thread(
        target=_watch_lifeline, args=(lifeline, os.getppid(), task_pid), name="lifeline", daemon=True
    ).start()
    while True:
        try:
            workload = conn.recv()
        except (EOFError, OSError):
            return
        if workload is None:
            return
        try:
            code = _run(workload, server, f"{title} {workload.display_name}", retry_window)
            conn.send(("exit", int(code) if code is not None else 0, None))
        except BaseException as err:  # report, never die silently with a task in hand
            kind = "not_started" if start_refused(err) else "error"
            with contextlib.suppress(Exception):
                conn.send((kind, None, f"{type(err).__name__}: {err}"))
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                return
        finally:
            task_pid.value = 0


def start_refused(err: BaseException) -> bool:
    """Whether the Execution API refused to start the task (HTTP 409 on ``.../run``): another
    start of this queueing won, or the task instance is no longer QUEUED. Such a try did not run
    here, and its end must not be written over the winner's."""
    from airflow.sdk.api.client import ServerResponseError

    if not isinstance(err, ServerResponseError):
        return False
    try:
        return err.response.status_code == 409 and err.request.url.path.endswith("/run")
    except Exception:
        return False


def _set_title(text: str) -> None:
    with contextlib.suppress(ImportError):
        from setproctitle import setproctitle

        setproctitle(text)


def _run(workload: Any, server: str | None, proctitle: str, retry_window: float) -> int | None:
    """Supervise one workload: a task with our Execution API retry window (see ``api_client``)
    when ``retry_window`` > 0, anything else (or a window of 0) as Airflow's executors do."""
    from airflow.executors.base_executor import BaseExecutor
    from airflow.executors.workloads import ExecuteTask

    if retry_window > 0 and isinstance(workload, ExecuteTask):
        from airflow_kestra_provider.worker.api_client import run_task

        _set_title(proctitle)
        return run_task(workload, server=server, retry_window=retry_window)
    return BaseExecutor.run_workload(
        workload, server=server, proctitle=proctitle, subprocess_logs_to_stdout=True
    )


# Modules a task process would otherwise import after its fork, every time: the SDK's public
# names (what ``from airflow.sdk import dag, task`` and the usual DAG file import resolve to,
# lazily), the task runner, the standard provider's Python operators behind ``@task``, and what
# the supervisor imports for each task's log and connections.
PRELOAD_MODULES = (
    "airflow.executors.base_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    # what the task runner's parse() imports for each task (the DagBag, and through it the
    # serialization code and Airflow's ORM models): most of a no-op task's CPU otherwise
    "airflow.dag_processing.dagbag",
    "airflow.sdk.definitions.connection",
    "airflow.sdk.log",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.operators.bash",
    "jinja2.ext",
    # what every task process still imported after its fork: the bundle class the task runner's
    # bundle manager loads, and the version the task runner reports
    "airflow.dag_processing.bundles.local",
    "airflow.version",
    "airflow_kestra_provider.worker.api_client",
)


def preload() -> list[str]:
    """Import, once before the runners fork, what each task would import after its own fork.

    A task process is forked from its runner, so anything imported here is already in its
    memory: parsing a DAG file then costs the file itself, not the ~50 SDK modules behind
    ``airflow.sdk``'s lazy names. Also builds the Execution API client's SSL context and the task
    runner's listener manager (which loads the plugins), both cached per process. Returns what
    could not be loaded (optional packages), for the log.
    """
    import importlib

    missing = []
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    import airflow.sdk

    for name in getattr(airflow.sdk, "__all__", ()):
        try:
            getattr(airflow.sdk, name)
        except (ImportError, AttributeError):
            missing.append(f"airflow.sdk.{name}")
    _build_ssl_contexts()
    # The task runner's listener manager (cached per process) loads every plugin the first time
    # a task asks for it: 0.3 s to seconds per task on 2 busy cores when each task did it.
    with contextlib.suppress(Exception):
        from airflow.sdk.listener import get_listener_manager

        get_listener_manager()
    from airflow_kestra_provider.worker import supervisor_tuning

    supervisor_tuning.apply()
    if missing:
        log.debug("runner preload: not available: %s", ", ".join(missing))
    return missing


def _build_ssl_contexts() -> None:
    """Build the Execution API client's SSL context (certifi's bundle: ~0.1 s of CPU) once, for
    both client classes a runner uses: the cache is per class, so warming ``Client``'s alone left
    every runner paying for :class:`RetryWindowClient`'s on its first task."""
    with contextlib.suppress(Exception):
        from airflow.sdk.api import client

        from airflow_kestra_provider.worker.api_client import RetryWindowClient

        for cls in (client.Client, RetryWindowClient):
            cls._get_ssl_context_cached(client.API_SSL_CA_FILE_PATH, client.API_SSL_CERT_PATH)


@dataclass
class _Runner:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    task_pid: Any  # multiprocessing.Value("i"): pid of the task process it runs, or 0
    job: Job | None = None
    started: list[float] = field(default_factory=list)


class RunnerPool:
    """``size`` runner processes; :meth:`submit` hands a job to an idle one.

    ``retry_window`` is ``[kestra] execution_api_retry_window``: seconds for which the runners'
    Execution API calls are retried (0: Airflow's own retries only).
    """

    def __init__(
        self,
        size: int,
        server: str | None,
        title: str = "airflow kestra runner:",
        retry_window: float = 0.0,
    ) -> None:
        if size < 1:
            raise ValueError("runner pool size must be >= 1")
        self.size = size
        self.server = server
        self.title = title
        self.retry_window = retry_window
        self._ctx: Any = None  # the forkserver context (multiprocessing.context.ForkServerContext)
        self._lock = threading.Lock()
        self._runners: list[_Runner] = []
        self._idle: list[_Runner] = []
        self._stopping = False
        self._drain_cut = threading.Event()  # see cut_drain()
        # Only this process holds the write end; runners get the read end (see _watch_lifeline).
        self._lifeline_write: int | None = None
        self._lifeline_read: Connection | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the forkserver and fork every runner from it. Call before the worker starts
        its threads (the forkserver is exec'd with the secrets removed from the environment)."""
        from airflow_kestra_provider.worker import forkserver

        self._ctx = forkserver.start()
        read_end, self._lifeline_write = os.pipe()
        self._lifeline_read = Connection(read_end, writable=False)
        for _ in range(self.size):
            runner = self._spawn()
            self._runners.append(runner)
            self._idle.append(runner)

    def _spawn(self) -> _Runner:
        assert self._ctx is not None and self._lifeline_read is not None
        parent, child = self._ctx.Pipe(duplex=True)
        task_pid = self._ctx.Value("i", 0, lock=False)
        process = self._ctx.Process(
            target=_runner_main,
            args=(child, self.server, self.title, self.retry_window, self._lifeline_read, task_pid),
            name="kestra-runner",
            daemon=False,
        )
        process.start()
        child.close()
        return _Runner(process, parent, task_pid)

    @property
    def free_slots(self) -> int:
        with self._lock:
            return len(self._idle)

    @property
    def busy(self) -> int:
        with self._lock:
            return sum(1 for r in self._runners if r.job is not None)

    def submit(self, job: Job) -> bool:
        """Hand ``job`` to an idle runner; False when none is idle (the caller over-claimed)."""
        with self._lock:
            if self._stopping or not self._idle:
                return False
            runner = self._idle.pop()
            runner.job = job
        try:
            runner.conn.send(job.workload)
        except (OSError, ValueError) as err:
            log.warning("could not hand %s to runner %s: %s", job.workload_id, runner.process.pid, err)
            # The sentinel will show the runner dead; collect() then reports the job failed.
            return True
        except Exception:
            # Nothing was written (pickling failed before the write): the runner is still idle.
            with self._lock:
                runner.job = None
                if not self._stopping:
                    self._idle.append(runner)
            raise
        return True

    # -- results --------------------------------------------------------------------------
    def collect(self, timeout: float) -> list[TaskResult]:
        """Wait up to ``timeout`` s for finished jobs or dead runners; respawn dead runners."""
        with self._lock:
            runners = list(self._runners)
        waitables: list[Any] = [r.conn for r in runners] + [r.process.sentinel for r in runners]
        ready = set(wait(waitables, timeout)) if waitables else set()
        results: list[TaskResult] = []
        for runner in runners:
            if runner.conn in ready:
                try:
                    kind, code, error = runner.conn.recv()
                except (EOFError, OSError):
                    continue  # the sentinel says more below
                job = runner.job
                with self._lock:
                    runner.job = None
                    if not self._stopping:
                        self._idle.append(runner)
                if job is not None:
                    results.append(_result(job, kind, code, error))
        for runner in runners:
            if runner.process.sentinel in ready or not runner.process.is_alive():
                results.extend(self._replace_dead(runner))
        return results

    def _replace_dead(self, runner: _Runner) -> list[TaskResult]:
        runner.process.join(0.1)
        if runner.process.is_alive():
            return []
        code = runner.process.exitcode
        job = runner.job
        with self._lock:
            if runner in self._runners:
                self._runners.remove(runner)
            if runner in self._idle:
                self._idle.remove(runner)
            stopping = self._stopping
        runner.conn.close()
        results = []
        if job is not None:
            # Its task dies with it (parent-death signal); its task's own children are killed
            # here, before the try is reported, so a retry never overlaps them.
            _kill_group(runner.task_pid.value)
            detail = f"runner process {runner.process.pid} exited with code {code}"
            log.error("%s while running workload %s", detail, job.workload_id)
            results.append(TaskResult(job.workload_id, "failed", code, detail))
        if not stopping:
            replacement = self._spawn()
            with self._lock:
                self._runners.append(replacement)
                self._idle.append(replacement)
        return results

    def stop(self, drain: bool, timeout: float = 60.0) -> list[TaskResult]:
        """Stop the runners. ``drain`` waits for running jobs first; otherwise they are killed."""
        import time

        with self._lock:
            self._stopping = True
            self._idle.clear()
        results: list[TaskResult] = []
        deadline = time.monotonic() + timeout
        while drain and self.busy and time.monotonic() < deadline and not self._drain_cut.is_set():
            results.extend(self.collect(0.5))
        with self._lock:
            runners = list(self._runners)
        for runner in runners:
            if runner.job is None:
                with contextlib.suppress(OSError, ValueError):
                    runner.conn.send(None)
            else:
                _kill_group(runner.task_pid.value)
                _kill_tree(runner.process.pid)
        for runner in runners:
            runner.process.join(5)
            if runner.process.is_alive():
                _kill_tree(runner.process.pid)
                runner.process.join(5)
            if runner.job is not None:
                detail = "worker stopped while the task ran"
                results.append(TaskResult(runner.job.workload_id, "failed", None, detail))
                runner.job = None
            runner.conn.close()
        with self._lock:
            self._runners.clear()
        if self._lifeline_write is not None:
            with contextlib.suppress(OSError):
                os.close(self._lifeline_write)
            self._lifeline_write = None
        if self._lifeline_read is not None:
            self._lifeline_read.close()
            self._lifeline_read = None
        return results

    def cut_drain(self) -> None:
        """End a drain under way in :meth:`stop` now: its running jobs are killed (and reported
        failed), as when the drain times out."""
        self._drain_cut.set()

    def kill_jobs(self, workload_ids: set[str]) -> int:
        """Kill the runners (and task process groups) holding these workloads; the result loop
        then sees them die, reports them and forks replacements. Returns how many were killed."""
        with self._lock:
            doomed = [r for r in self._runners if r.job is not None and r.job.workload_id in workload_ids]
        for runner in doomed:
            _kill_group(runner.task_pid.value)
            _kill_tree(runner.process.pid)
        return len(doomed)

    def running_workloads(self) -> set[str]:
        with self._lock:
            return {r.job.workload_id for r in self._runners if r.job is not None}


def _result(job: Job, kind: str, code: int | None, error: str | None) -> TaskResult:
    if kind == "not_started":
        return TaskResult(job.workload_id, "not_started", None, error)
    if kind == "error":
        return TaskResult(job.workload_id, "failed", code, error)
    # ``supervise_task`` returned: the task's own end (success, failure, retry, deferral, a kill
    # after a clear) was recorded through the Execution API. As under LocalExecutor, that is a
    # ``success`` event whatever the exit code; ``failed`` is for a try whose supervisor itself
    # failed or died.
    detail = None if code == 0 else f"task process exited with code {code}"
    return TaskResult(job.workload_id, "success", code, detail)


def _kill_tree(pid: int | None) -> None:
    if pid is None:
        return
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
