"""Wake an idle scheduler or triggerer at once on PostgreSQL with LISTEN/NOTIFY.

Who notifies: four small triggers on Airflow's own tables, so that every writer (the REST API
queueing a run, a task reporting its end or its deferral through the Execution API, the
triggerer, the dag-processor, an asset event from any component) wakes the scheduler and the
triggerer without any of them knowing about it. On :data:`CHANNEL` (the scheduler):

* ``dag_run``: a row inserted or updated with state ``queued``;
* ``task_instance``: a row whose state changed to one the scheduler must react to
  (finished, up for retry / reschedule, or ``scheduled`` by the triggerer);
* ``asset_dag_run_queue``: rows inserted (an asset event queued a consumer DAG).

On :data:`TRIGGERER_CHANNEL` (``airflow kestra triggerer``):

* ``trigger``: rows inserted (a task deferred, a DAG with an asset watcher was parsed);
* ``task_instance``: a row that leaves ``deferred`` (its trigger fired, or the task was cleared
  or marked while waiting, so its trigger must be cancelled and cleaned up).

The triggers only call ``pg_notify`` (no table is changed, no column is added). They have no
column lists or WHEN clauses, so they hold no dependency on any column and never block an
Airflow migration; the state test lives in the trigger function. They are created by
:func:`install_triggers`, an explicit, idempotent step that ``airflow kestra scheduler`` runs at
start when ``[kestra] listen_notify`` is true (a no-op without any lock when they are in
place; see its docstring for how it stays out of the way of live traffic);
:func:`remove_triggers` drops them. The payload names the table (and the new state), e.g.
``task_instance:success``. NOTIFY is delivered at commit and collapsed per transaction (same
channel and payload), so a transaction finishing many task instances sends one notification.
"""

from __future__ import annotations

import logging
import select
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

CHANNEL = "airflow_kestra_scheduler"
TRIGGERER_CHANNEL = "airflow_kestra_triggerer"
FUNCTION = "airflow_kestra_scheduler_notify"
_LOCK_KEY = 0x6B65737472610001  # advisory lock serializing trigger DDL between replicas
TRIGGERS = {
    "airflow_kestra_wake_dag_run": "dag_run",
    "airflow_kestra_wake_task_instance": "task_instance",
    "airflow_kestra_wake_asset_queue": "asset_dag_run_queue",
    "airflow_kestra_wake_triggerer": "trigger",
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

TASK_INSTANCE_PAYLOAD = "task_instance:"  # + the new state, see WAKE_TI_STATES
ASSET_QUEUE_PAYLOAD = "asset_dag_run_queue"  # an asset event queued a consumer DAG
# What a scheduler's own loop announces and acts on in that same loop: the task instances it
# schedules are queued by the loop's critical section, the runs it creates are started by the
# loop's start step (a step that ran out of its batch or budget asks for the next loop itself).
OWN_ECHOES = frozenset({TASK_INSTANCE_PAYLOAD + "scheduled", "dag_run:queued"})


# What a KestraExecutor worker sends on CHANNEL in the statement that records a batch of results:
# every task of the batch succeeded (their own ``task_instance:success`` already told the
# scheduler; the results only free executor slots), or at least one did not (the scheduler's
# executor events may have to fail a task instance whose process died).
WORKLOADS_SUCCEEDED = "kestra_workload:succeeded"
WORKLOADS_FINISHED = "kestra_workload:finished"


class Arrival(NamedTuple):
    """One notification received: its payload and the backend pid of the session that sent it."""

    payload: str
    pid: int


def task_instances_changed(payloads: Iterable[str]) -> bool:
    """Whether ``payloads`` announce task-instance state changes that may make others
    queueable: one ended or left for a retry or reschedule (its pool and concurrency slots are
    free), or one set to ``scheduled`` by someone else (the triggerer resuming a task). A
    scheduler leaves its own echoes out first (:meth:`OwnConnections.echo`)."""
    return any(p.startswith(TASK_INSTANCE_PAYLOAD) for p in payloads)


def assets_queued(payloads: Iterable[str]) -> bool:
    """Whether ``payloads`` announce an asset event that queued a consumer DAG (which may now
    be ready for a run)."""
    return ASSET_QUEUE_PAYLOAD in payloads


class OwnConnections:
    """The backend pids of the database sessions this process's ``engine`` holds open.

    psycopg2 gives each notification the pid of the backend that sent it, so a scheduler can
    tell the echoes of its own commits (:data:`OWN_ECHOES`, which the same loop acted on) from
    everyone else's notifications without changing the triggers. A pid is recorded each time its
    connection is checked out and forgotten when the pool closes the connection. One
    opened before this object, or a driver without ``get_backend_pid``, is not known as own:
    its echoes cost one loop more, nothing else.
    """

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self._engine = engine
        self._pids: dict[int, int] = {}  # id() of the DBAPI connection -> its backend pid
        self._listeners: tuple[tuple[str, Callable[..., None]], ...] = (
            ("checkout", self._checked_out),
            ("close", self._closed),
            ("close_detached", self._closed),
        )
        for name, listener in self._listeners:
            event.listen(engine, name, listener)

    def _checked_out(self, dbapi_connection: Any, *_: Any) -> None:
        # Read at every checkout (libpq keeps it: no round trip), so a connection object that
        # reuses a closed one's id() never carries that one's pid.
        try:
            self._pids[id(dbapi_connection)] = int(dbapi_connection.get_backend_pid())
        except Exception:  # another driver, or a broken connection: not known as own
            self._pids.pop(id(dbapi_connection), None)
            log.debug("no backend pid for a pooled connection", exc_info=True)

    def _closed(self, dbapi_connection: Any, *_: Any) -> None:
        self._pids.pop(id(dbapi_connection), None)

    def echo(self, arrival: Arrival) -> bool:
        """Whether ``arrival`` is one of :data:`OWN_ECHOES` sent by one of these sessions."""
        return arrival.payload in OWN_ECHOES and arrival.pid in self._pids.values()

    def close(self) -> None:
        from sqlalchemy import event

        for name, listener in self._listeners:
            event.remove(self._engine, name, listener)
        self._pids.clear()


_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'dag_run' THEN
        IF NEW.state = 'queued' THEN
            PERFORM pg_notify('{CHANNEL}', 'dag_run:queued');
        END IF;
    ELSIF TG_TABLE_NAME = 'task_instance' THEN
        IF NEW.state IS DISTINCT FROM OLD.state
           AND NEW.state IN ({", ".join(f"'{s}'" for s in WAKE_TI_STATES)}) THEN
            PERFORM pg_notify('{CHANNEL}', 'task_instance:' || NEW.state);
        END IF;
        IF OLD.state = 'deferred' AND NEW.state IS DISTINCT FROM OLD.state THEN
            PERFORM pg_notify('{TRIGGERER_CHANNEL}', 'task_instance:undeferred');
        END IF;
    ELSIF TG_TABLE_NAME = 'trigger' THEN
        PERFORM pg_notify('{TRIGGERER_CHANNEL}', 'trigger');
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


def _begin_locked(conn: Any, lock_timeout: str) -> None:
    from sqlalchemy import text

    conn.execute(text(f"SET LOCAL lock_timeout = '{lock_timeout}'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def install_triggers(engine: Any, lock_timeout: str = "5s") -> bool:
    """Create what is missing of the notify function and triggers; idempotent.

    Takes no lock when everything is in place (the usual case: a replica starting while others
    run). Otherwise each change is its own short transaction, one table at a time (no lock
    is ever held on two tables, so no deadlock with Airflow's transactions), nothing is dropped
    (``DROP TRIGGER`` would need an ACCESS EXCLUSIVE lock on a busy table), and
    ``lock_timeout`` bounds how long Airflow's traffic can queue behind the DDL. Returns False
    (after logging) when a lock could not be had in time or the database user may not create
    triggers: the scheduler then runs on its
    back-off alone until the next start or ``airflow kestra notify-triggers``.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.begin() as conn:
            current = conn.execute(
                text("SELECT prosrc FROM pg_proc WHERE proname = :name"), {"name": FUNCTION}
            ).scalar()
            existing = set(
                conn.execute(
                    text("SELECT tgname FROM pg_trigger WHERE tgname = ANY(:names)"),
                    {"names": list(TRIGGERS)},
                ).scalars()
            )
        wanted_src = _FUNCTION_SQL.split("$$")[1]
        if current != wanted_src:
            with engine.begin() as conn:
                _begin_locked(conn, lock_timeout)
                conn.execute(text(_FUNCTION_SQL))  # CREATE OR REPLACE: no lock on any table
        for name, table in TRIGGERS.items():
            if name in existing:
                continue
            with engine.begin() as conn:
                _begin_locked(conn, lock_timeout)
                exists = conn.execute(
                    text("SELECT 1 FROM pg_trigger WHERE tgname = :name"), {"name": name}
                ).scalar()
                if not exists:
                    conn.execute(text(_trigger_sql(name, table)))
    except SQLAlchemyError:  # lock timeout, or no privilege to create triggers
        log.warning(
            "Could not install the LISTEN/NOTIFY wake-up triggers (lock not granted within %s, "
            "or not allowed); "
            "idle waits use the back-off only. Run `airflow kestra notify-triggers` later.",
            lock_timeout,
            exc_info=True,
        )
        return False
    log.info("LISTEN/NOTIFY wake-up triggers in place on %s", ", ".join(sorted(set(TRIGGERS.values()))))
    return True


def remove_triggers(engine: Any, lock_timeout: str = "30s") -> None:
    """Drop the triggers and the function, one table per transaction."""
    from sqlalchemy import text

    for name, table in TRIGGERS.items():
        with engine.begin() as conn:
            _begin_locked(conn, lock_timeout)
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
    with engine.begin() as conn:
        _begin_locked(conn, lock_timeout)
        conn.execute(text(f"DROP FUNCTION IF EXISTS {FUNCTION}()"))


class NotifyWaker:
    """A dedicated connection LISTENing on ``channel``; :meth:`wait` sleeps until notified.

    Any database error closes the connection and turns :meth:`wait` into a plain sleep until a
    reconnection (tried at most every ``retry_interval`` seconds) succeeds, so the scheduler
    loop never dies from the waker. A caller that waits on other files too (the triggerer's
    selector) takes :meth:`connection` into its own ``select`` and calls :meth:`drain`.
    """

    def __init__(self, engine: Any, retry_interval: float = 5.0, channel: str = CHANNEL) -> None:
        self._engine = engine
        self._channel = channel
        self._conn: Any = None
        self._retry_interval = retry_interval
        self._next_attempt = 0.0
        self.wakeups = 0
        self.payloads: Counter[str] = Counter()  # notifications received, by payload
        self._arrived: set[Arrival] = set()  # received since the last take_arrived()

    def _connect(self) -> None:
        pooled = self._engine.raw_connection()
        pooled.detach()  # ours for good: never handed back to the pool while LISTENing
        conn = pooled.dbapi_connection
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"LISTEN {self._channel}")
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

    @property
    def connected(self) -> bool:
        """The LISTEN connection is up (no reconnection attempt: :meth:`wait` makes those)."""
        return self._conn is not None

    def connection(self) -> Any:
        """The LISTEN connection (it has ``fileno()``), or None while it is down."""
        return self._conn if self._ensure() else None

    def wait(self, timeout: float, wakes: Callable[[Arrival], bool] | None = None) -> bool:
        """Sleep up to ``timeout`` seconds; return True as soon as a notification arrives (one
        for which ``wakes`` is true, when given: the others are received and kept for
        :meth:`take_arrived`, but the wait goes on)."""
        if not self._ensure():
            time.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        try:
            while True:
                if any(wakes is None or wakes(arrival) for arrival in self._receive()):
                    self.wakeups += 1
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([self._conn], [], [], left)
                if not readable:
                    return False
        except Exception:
            log.exception("LISTEN connection lost; reconnecting later")
            self.close()
            return False

    def discard_pending(self) -> None:
        """Drop the notifications that already arrived: a loop about to start sees every commit
        they announce, so they must not wake the idle wait after it (the scheduler's own commits
        notify it too). A lost connection is closed, as in :meth:`wait`."""
        if self._conn is None:
            return
        try:
            self.drain()
        except Exception:
            log.exception("LISTEN connection lost; reconnecting later")
            self.close()

    def drain(self) -> bool:
        """Read what arrived on the connection; True when it held a notification."""
        return bool(self._receive())

    def _receive(self) -> list[Arrival]:
        self._conn.poll()
        arrivals = [Arrival(n.payload, n.pid) for n in self._conn.notifies]
        self._conn.notifies.clear()
        self.payloads.update(arrival.payload for arrival in arrivals)
        self._arrived.update(arrivals)
        return arrivals

    def take_arrived(self) -> set[Arrival]:
        """The distinct notifications (payload and sender) received by :meth:`wait`,
        :meth:`discard_pending` or :meth:`drain` since the previous call."""
        arrived, self._arrived = self._arrived, set()
        return arrived

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)
        self._conn = None
