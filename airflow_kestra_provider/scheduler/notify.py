"""Wake an idle scheduler at once on PostgreSQL with LISTEN/NOTIFY.

Who notifies: three small triggers on Airflow's own tables, so that every writer (the REST API
queueing a run, a task reporting its end through the Execution API, the triggerer, an asset
event from any component) wakes the scheduler without any of them knowing about it:

* ``dag_run``: a row inserted or updated with state ``queued``;
* ``task_instance``: a row whose state changed to one the scheduler must react to
  (finished, up for retry / reschedule, or ``scheduled`` by the triggerer);
* ``asset_dag_run_queue``: rows inserted (an asset event queued a consumer DAG).

The triggers only call ``pg_notify`` (no table is changed, no column is added). They have no
column lists or WHEN clauses, so they hold no dependency on any column and never block an
Airflow migration; the state test lives in the trigger function. They are created by
:func:`install_triggers`, an explicit, idempotent step that ``airflow kestra scheduler`` runs at
start when ``[kestra] listen_notify`` is true, serialized by an advisory lock so replicas can
start together; :func:`remove_triggers` drops them. NOTIFY is delivered at commit and collapsed
per transaction (same channel and payload), so a transaction finishing many task instances
sends one notification.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "airflow_kestra_scheduler"
FUNCTION = "airflow_kestra_scheduler_notify"
_LOCK_KEY = 0x6B65737472610001  # advisory lock serializing trigger DDL between replicas
TRIGGERS = {
    "airflow_kestra_wake_dag_run": "dag_run",
    "airflow_kestra_wake_task_instance": "task_instance",
    "airflow_kestra_wake_asset_queue": "asset_dag_run_queue",
}
WAKE_TI_STATES = (
    "success",
    "failed",
    "skipped",
    "upstream_failed",
    "up_for_retry",
    "up_for_reschedule",
    "scheduled",
    "removed",
)

_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'dag_run' THEN
        IF NEW.state = 'queued' THEN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
        END IF;
    ELSIF TG_TABLE_NAME = 'task_instance' THEN
        IF NEW.state IS DISTINCT FROM OLD.state
           AND NEW.state IN ({", ".join(f"'{s}'" for s in WAKE_TI_STATES)}) THEN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
        END IF;
    ELSE
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$
"""


def _trigger_sql(name: str, table: str) -> str:
    if table == "dag_run":
        when = "AFTER INSERT OR UPDATE ON dag_run FOR EACH ROW"
    elif table == "task_instance":
        when = "AFTER UPDATE ON task_instance FOR EACH ROW"
    else:
        when = f"AFTER INSERT ON {table} FOR EACH STATEMENT"
    return f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION {FUNCTION}()"


def is_postgres(engine: Any) -> bool:
    return bool(engine.dialect.name == "postgresql")


def install_triggers(engine: Any) -> None:
    """Create (or re-create) the notify function and triggers; safe to run any number of times."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        conn.execute(text(_FUNCTION_SQL))
        for name, table in TRIGGERS.items():
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            conn.execute(text(_trigger_sql(name, table)))
    log.info("LISTEN/NOTIFY wake-up triggers installed on %s", ", ".join(sorted(set(TRIGGERS.values()))))


def remove_triggers(engine: Any) -> None:
    """Drop the triggers and the function (the scheduler then falls back to its back-off)."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        for name, table in TRIGGERS.items():
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
        conn.execute(text(f"DROP FUNCTION IF EXISTS {FUNCTION}()"))


class NotifyWaker:
    """A dedicated connection LISTENing on :data:`CHANNEL`; :meth:`wait` sleeps until notified.

    Any database error closes the connection and turns :meth:`wait` into a plain sleep until a
    reconnection (tried at most every ``retry_interval`` seconds) succeeds, so the scheduler
    loop never dies from the waker.
    """

    def __init__(self, engine: Any, retry_interval: float = 5.0) -> None:
        self._engine = engine
        self._conn: Any = None
        self._retry_interval = retry_interval
        self._next_attempt = 0.0
        self.wakeups = 0

    def _connect(self) -> None:
        pooled = self._engine.raw_connection()
        pooled.detach()  # ours for good: never handed back to the pool while LISTENing
        conn = pooled.dbapi_connection
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        self._conn = conn

    def _ensure(self) -> bool:
        if self._conn is not None:
            return True
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        self._next_attempt = now + self._retry_interval
        try:
            self._connect()
        except Exception:
            log.exception("LISTEN connection failed; sleeping without wake-up until it is back")
            self.close()
            return False
        return True

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True as soon as a notification arrives."""
        if not self._ensure():
            time.sleep(timeout)
            return False
        try:
            if not self._drain():
                readable, _, _ = select.select([self._conn], [], [], timeout)
                if not readable or not self._drain():
                    return False
            self.wakeups += 1
            return True
        except Exception:
            log.exception("LISTEN connection lost; reconnecting later")
            self.close()
            return False

    def _drain(self) -> bool:
        self._conn.poll()
        got = bool(self._conn.notifies)
        self._conn.notifies.clear()
        return got

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)
        self._conn = None
