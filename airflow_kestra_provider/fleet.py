"""What the fleet commands and the UI page make of the ``kestra_worker`` rows: a worker's state
for people, the worker table, and the state changes an operator asks for (pure functions; the SQL
is in :mod:`airflow_kestra_provider.queue.claims`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_kestra_provider import settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_kestra_provider.queue.claims import WorkerRow

# (new state, the states it may come from) of each operator action
MAINTENANCE_ON: tuple[str, tuple[str, ...]] = ("maintenance", ("running",))
MAINTENANCE_OFF: tuple[str, tuple[str, ...]] = ("running", ("maintenance",))
DRAIN: tuple[str, tuple[str, ...]] = ("draining", ("running", "maintenance"))


class StateChangeRefused(Exception):
    """A worker's state was not changed: ``unknown`` when no worker has that name, else the
    message says why (wrong state, embedded worker)."""

    def __init__(self, message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


def change_state(
    session: Session,
    name: str,
    state: str,
    from_states: tuple[str, ...],
    refuse: Callable[[Any], str | None] | None = None,
) -> Any:
    """Move worker ``name`` to ``state`` (from one of ``from_states``; already there: nothing to
    do); returns its ``worker_named`` row as it was, or raises StateChangeRefused."""
    from airflow_kestra_provider.queue import claims

    row = claims.worker_named(session, name)
    if row is None:
        raise StateChangeRefused(f"no worker named {name!r}", unknown=True)
    reason = refuse(row) if refuse is not None else None
    if reason is not None:
        raise StateChangeRefused(reason)
    if row.state != state and claims.set_worker_state(session, name, state, from_states) is None:
        raise StateChangeRefused(f"worker {name!r} is {row.state}, not {' or '.join(from_states)}")
    return row


def drain_refusal(name: str, row: Any) -> str | None:
    """Why worker ``name`` (its ``worker_named`` row) cannot be drained, or None."""
    if row.embedded:
        return (
            f"worker {name!r} is a scheduler's embedded worker: it stops with its scheduler "
            "(put it in maintenance to stop its claims)"
        )
    return None


def display_state(row: WorkerRow, heartbeat_interval: float, worker_timeout: float) -> str:
    """What a worker is, for people: healthy, stale (heartbeat late, not yet past the timeout),
    maintenance, draining, stopped or dead (declared dead, or silent past the timeout)."""
    from airflow_kestra_provider.models.tables import LIVE_WORKER_STATES

    if row.state not in LIVE_WORKER_STATES:
        return row.state
    if row.heartbeat_age > worker_timeout:
        return "dead"
    if row.state != "running":
        return row.state
    return "stale" if row.heartbeat_age > 2 * heartbeat_interval + 1 else "healthy"


def newest_by_name(rows: list[WorkerRow]) -> list[WorkerRow]:
    """The newest registration of each name (a worker declared dead registers anew)."""
    newest: dict[str, WorkerRow] = {}
    for row in rows:
        if row.name not in newest or row.started_at > newest[row.name].started_at:
            newest[row.name] = row
    return sorted(newest.values(), key=lambda r: r.name)


def worker_table(
    rows: list[WorkerRow], heartbeat_interval: float, worker_timeout: float
) -> list[dict[str, Any]]:
    table = []
    for row in newest_by_name(rows):
        state = display_state(row, heartbeat_interval, worker_timeout)
        live = state in ("healthy", "stale", "maintenance", "draining")
        table.append(
            {
                "name": row.name,
                "host": row.hostname,
                "pid": row.pid,
                "queues": ",".join(row.queues) if row.queues is not None else settings.ALL_QUEUES,
                "concurrency": row.concurrency,
                "running": row.running,
                "free": max(row.concurrency - row.running, 0) if state in ("healthy", "stale") else 0,
                "state": state if live or not row.embedded else f"{state} (embedded)",
                "last_heartbeat": row.heartbeat_at.isoformat(timespec="seconds"),
                "heartbeat_age_s": round(row.heartbeat_age, 1),
                "version": row.version or "",
                "embedded": row.embedded,
            }
        )
    return table
