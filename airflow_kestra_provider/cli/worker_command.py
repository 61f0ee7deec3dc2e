"""``airflow kestra worker``: a KestraExecutor worker as its own process (scale-out)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from airflow_kestra_provider import settings

if TYPE_CHECKING:
    from sqlalchemy.exc import DBAPIError

    from airflow_kestra_provider.worker.worker import KestraWorker, WorkerSettings

log = logging.getLogger(__name__)

USAGE_EXIT_CODE = 2  # a bad option, as argparse exits for one
FAILURE_EXIT_CODE = 1  # a bad [kestra] option or an unreachable metadata database


def _fail(message: str, exit_code: int = FAILURE_EXIT_CODE) -> NoReturn:
    print(f"airflow kestra worker: error: {message}", file=sys.stderr, flush=True)
    sys.exit(exit_code)


def check_concurrency(value: int | None) -> None:
    """``--concurrency`` must be a positive number of task processes (None: the configured one)."""
    if value is not None and value < 1:
        _fail(f"argument --concurrency: must be >= 1, got {value}", USAGE_EXIT_CODE)


def database_error_message(err: DBAPIError) -> str:
    """One line for a failed metadata database call: the URL without its password, and the
    driver's first line (psycopg2's "connection to server at ... failed: Connection refused")."""
    from airflow import settings as airflow_settings
    from sqlalchemy.exc import OperationalError

    engine = airflow_settings.engine
    url = engine.url if engine is not None else None
    reason = str(err.orig if err.orig is not None else err).strip()
    reason = reason.splitlines()[0].strip() if reason else type(err).__name__
    if url is not None and url.password:
        reason = reason.replace(str(url.password), "***")
    where = f" at {url.render_as_string(hide_password=True)}" if url is not None else ""
    if isinstance(err, OperationalError):
        return f"cannot reach the metadata database{where}: {reason}"
    return f"metadata database error{where}: {reason}"


def _start(kestra_worker: KestraWorker) -> None:
    """Start the worker; on a failure stop the runner processes it may have forked already."""
    from sqlalchemy.exc import DBAPIError

    try:
        kestra_worker.start()
    except (settings.KestraConfigError, DBAPIError) as err:
        kestra_worker.pool.stop(drain=False, timeout=5.0)
        if isinstance(err, DBAPIError):
            _fail(database_error_message(err))
        _fail(str(err))


def _preflight(config: WorkerSettings) -> None:
    """What ``start()`` checks first, before a daemon detaches, so a mistake is told on the
    terminal: PostgreSQL, our tables, a name no live worker holds."""
    from sqlalchemy.exc import DBAPIError

    from airflow_kestra_provider.queue import claims
    from airflow_kestra_provider.worker.worker import check_name_free, ensure_schema, require_postgres

    try:
        require_postgres()
        ensure_schema()
        with claims.session_scope() as session:
            check_name_free(session, config.name, config.worker_timeout)
    except DBAPIError as err:
        _fail(database_error_message(err))
    except settings.KestraConfigError as err:
        _fail(str(err))


@contextmanager
def _pid_file(path: str | None) -> Iterator[None]:
    """In the foreground, ``--pid`` is written as in daemon mode (and removed at exit)."""
    if not path:
        yield
        return
    from airflow.exceptions import AirflowException
    from airflow.utils.process_utils import check_if_pidfile_process_is_running

    try:
        check_if_pidfile_process_is_running(pid_file=path, process_name="kestra worker")
    except AirflowException as err:
        _fail(f"argument --pid: {err}")
    pid_path = Path(path)
    pid_path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with suppress(OSError):
            if pid_path.read_text().strip() == str(os.getpid()):
                pid_path.unlink()


def worker(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.version_compat import check_airflow_version
    from airflow_kestra_provider.worker.worker import WorkerSettings

    check_concurrency(args.concurrency)
    try:
        check_airflow_version("airflow kestra worker")
        config = WorkerSettings.from_config(
            embedded=False, concurrency=args.concurrency, queues=args.queues, name=args.name
        )
    except settings.KestraConfigError as err:  # UntestedAirflowVersion included
        _fail(str(err))
    _preflight(config)
    if args.daemon:
        from airflow.cli.commands.daemon_utils import run_command_with_daemon_option

        run_command_with_daemon_option(
            args=args,
            process_name="kestra-worker",
            callback=lambda: _run(config, args.skip_serve_logs),
            should_setup_logging=True,
            pid_file=args.pid,
        )
        return
    with _pid_file(args.pid):
        _run(config, args.skip_serve_logs)


def _run(config: WorkerSettings, skip_serve_logs: bool) -> None:
    """Run the worker until SIGTERM/SIGINT (drain, then exit), a drain asked for by ``airflow
    kestra workers drain`` (exit 0), or a dead worker thread (exit 1). A second signal during
    the drain kills the running tasks (they are reported failed and retried as their retries
    allow)."""
    from airflow.cli.commands.scheduler_command import _serve_logs
    from airflow.executors.base_executor import get_execution_api_server_url

    from airflow_kestra_provider.metrics import initialize_stats
    from airflow_kestra_provider.worker.worker import KestraWorker

    initialize_stats()  # Airflow initializes Stats in its own components only
    kestra_worker = KestraWorker(config, server=get_execution_api_server_url())
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: killing the running tasks", name)
            kestra_worker.pool.cut_drain()
            return
        log.info("%s: stopping the worker after its running tasks (send it again to kill them)", name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    failed = False
    with _serve_logs(skip_serve_logs):
        _start(kestra_worker)
        print(f"kestra worker {config.name} ({kestra_worker.id}) running; Ctrl-C to stop", flush=True)
        try:
            while not stop.wait(1.0):
                if kestra_worker.drain_requested.is_set():
                    log.warning("draining: exiting when the running tasks have ended")
                    break
                if not kestra_worker.alive():
                    log.error("a worker thread died; stopping")
                    failed = True
                    break
        finally:
            kestra_worker.stop(drain=True, drain_timeout=math.inf)
    if failed:
        sys.exit(FAILURE_EXIT_CODE)
