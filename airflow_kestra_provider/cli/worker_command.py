"""``airflow kestra worker``: a KestraExecutor worker as its own process (scale-out)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from airflow_kestra_provider import settings

log = logging.getLogger(__name__)


def worker(args: argparse.Namespace) -> None:
    from airflow.executors.base_executor import get_execution_api_server_url

    from airflow_kestra_provider.worker.worker import KestraWorker, WorkerSettings

    try:
        config = WorkerSettings.from_config(embedded=False, concurrency=args.concurrency)
    except settings.KestraConfigError as err:
        sys.exit(str(err))
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the worker after its running tasks", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    kestra_worker = KestraWorker(config, server=get_execution_api_server_url())
    try:
        kestra_worker.start()
    except settings.KestraConfigError as err:
        sys.exit(str(err))
    print(f"kestra worker {kestra_worker.id} running; Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(1.0):
            if not kestra_worker.alive():
                log.error("a worker thread died; stopping")
                break
    finally:
        kestra_worker.stop(drain=True)
