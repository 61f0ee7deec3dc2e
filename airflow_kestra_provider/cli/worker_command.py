"""``airflow kestra worker``: a KestraExecutor worker as its own process (scale-out)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from airflow_kestra_provider import settings

if TYPE_CHECKING:
    from sqlalchemy.exc import DBAPIError

    from airflow_kestra_provider.worker.worker import KestraWorker

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


def worker(args: argparse.Namespace) -> None:
    from airflow.executors.base_executor import get_execution_api_server_url

    from airflow_kestra_provider.version_compat import check_airflow_version
    from airflow_kestra_provider.worker.worker import KestraWorker, WorkerSettings

    check_concurrency(args.concurrency)
    try:
        check_airflow_version("airflow kestra worker")
        config = WorkerSettings.from_config(embedded=False, concurrency=args.concurrency)
    except settings.KestraConfigError as err:  # UntestedAirflowVersion included
        _fail(str(err))
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the worker after its running tasks", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    kestra_worker = KestraWorker(config, server=get_execution_api_server_url())
    _start(kestra_worker)
    print(f"kestra worker {kestra_worker.id} running; Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(1.0):
            if not kestra_worker.alive():
                log.error("a worker thread died; stopping")
                break
    finally:
        kestra_worker.stop(drain=True)
