"""When a component may judge other workers dead, and the reaping pass itself.

Workers reap in their heartbeat loop and the executor reaps in ``sync()`` (so a dead worker's
task instances are settled even when no worker is alive). A component judges others only after
a whole ``worker_timeout`` of working database access of its own: after an outage every worker
gets time to heartbeat again before anyone is declared dead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from airflow_kestra_provider import metrics
from airflow_kestra_provider.queue import claims

log = logging.getLogger(__name__)

PURGE_RETENTION = 3600.0  # seconds a reported workload (or a stopped worker's row) is kept
PURGE_INTERVAL = 60.0


class Reaper:
    """Reaping schedule of one component: at most every ``interval`` s, only while connected."""

    def __init__(self, timeout: float, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self._connected_since: float | None = clock()
        self._last_reap = float("-inf")
        self._last_purge = float("-inf")

    def database_failed(self) -> None:
        self._connected_since = None

    def database_ok(self) -> None:
        if self._connected_since is None:
            self._connected_since = self.clock()

    def due(self) -> bool:
        now = self.clock()
        return (
            self._connected_since is not None
            and now - self._connected_since >= self.timeout
            and now - self._last_reap >= self.interval
        )

    def reap(self, session: Session, who: str) -> tuple[int, int, int]:
        """One pass: declare silent workers dead, settle their claims, purge old rows."""
        now = self.clock()
        self._last_reap = now
        dead, released, failed = claims.reap_dead_workers(session, self.timeout)
        if released:
            claims.notify(session)  # wake the live workers: the released claims wait for a runner
        metrics.reaped(dead, released, failed)
        if dead or released or failed:
            log.warning(
                "%s: declared %d silent worker(s) dead; %d claim(s) released to other workers, "
                "%d running task instance(s) failed",
                who,
                dead,
                released,
                failed,
            )
        if now - self._last_purge >= PURGE_INTERVAL:
            claims.purge(session, PURGE_RETENTION)
            self._last_purge = now
        return dead, released, failed
