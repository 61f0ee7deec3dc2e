"""Wake an idle poller at once: in process (a threading.Event) and across processes (PostgreSQL
LISTEN/NOTIFY on :data:`~airflow_kestra_provider.queue.claims.NOTIFY_CHANNEL`)."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from airflow_kestra_provider.queue.claims import NOTIFY_CHANNEL
from airflow_kestra_provider.worker.failures import FailureLog

log = logging.getLogger(__name__)


class Listener:
    """A thread holding one dedicated connection that LISTENs and calls ``on_notify``."""

    def __init__(self, on_notify: Callable[[], None], retry_interval: float) -> None:
        self.on_notify = on_notify
        self.retry_interval = retry_interval
        self._stop = threading.Event()
        self.listening = False  # LISTEN is in effect: every notification reaches on_notify
        self._thread = threading.Thread(target=self._run, name="kestra-listen", daemon=True)
        self._failures = FailureLog(log, "LISTEN connection")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception:
                self._failures.failed(self.retry_interval)
                self._stop.wait(self.retry_interval)

    def _listen(self) -> None:
        from airflow import settings

        engine = settings.engine
        if engine is None:
            raise RuntimeError("Airflow's ORM is not configured")
        raw = engine.raw_connection()
        conn: Any = raw.dbapi_connection
        raw.detach()  # ours for good: never handed back to the pool
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.listening = True
            self._failures.succeeded()
            self.on_notify()  # anything queued before LISTEN took effect is found by this poll
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], 1.0)
                if not readable:
                    continue
                conn.poll()
                if conn.notifies:
                    conn.notifies.clear()
                    self.on_notify()
        finally:
            self.listening = False
            raw.close()
