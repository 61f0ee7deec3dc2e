"""``airflow kestra workers list|maintenance|drain|health``: the worker fleet, by worker name.

Each command is a statement or two on the metadata database (the ``kestra_worker`` rows the
workers heartbeat); the workers react at their next heartbeat (``[kestra]
worker_heartbeat_interval``). A user's mistake (unknown worker, wrong state, unreachable
database) is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_kestra_provider import settings
from airflow_kestra_provider.fleet import (  # noqa: F401 - also the CLI's names for them
    DRAIN,
    MAINTENANCE_OFF,
    MAINTENANCE_ON,
    StateChangeRefused,
    change_state,
    display_state,
    drain_refusal,
    newest_by_name,
    worker_table,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_kestra_provider.queue.claims import QueueDepth

FAILURE_EXIT_CODE = 1


def _fail(command: str, message: str) -> NoReturn:
    print(f"airflow kestra workers {command}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(FAILURE_EXIT_CODE)


@contextmanager
def _session(command: str) -> Iterator[Session]:
    """A committed session; an unreachable database or missing tables end the command in one line."""
    from sqlalchemy.exc import DBAPIError

    from airflow_kestra_provider.cli.worker_command import database_error_message
    from airflow_kestra_provider.queue import claims

    try:
        with claims.session_scope() as session:
            if not claims.tables_present(session):
                _fail(command, "the KestraExecutor's tables are missing: run `airflow db migrate`")
            yield session
    except DBAPIError as err:
        _fail(command, database_error_message(err))


def unserved_lines(depths: list[QueueDepth]) -> list[str]:
    return [
        f"queue {d.queue!r}: {d.waiting} task instance(s) waiting (oldest {d.oldest_age:.0f}s), and no "
        f"live worker serves it: start one with `airflow kestra worker --queues {d.queue}`"
        for d in depths
        if not d.served
    ]


def workers_list(args: argparse.Namespace) -> None:
    from airflow.cli.simple_table import AirflowConsole

    from airflow_kestra_provider.queue import claims

    with _session("list") as session:
        rows = claims.list_workers(session)
        sample = claims.sample_queues(session, None, settings.worker_timeout())
    table = worker_table(rows, settings.worker_heartbeat_interval(), settings.worker_timeout())
    AirflowConsole().print_as(data=table, output=args.output)
    for line in unserved_lines(sample.queues):
        print(line, file=sys.stderr)


def _change_state(
    command: str, name: str, state: str, from_states: tuple[str, ...], refuse: Callable[[Any], str | None]
) -> Any:
    """Move worker ``name`` to ``state``; returns its row as it was, or fails naming why not."""
    with _session(command) as session:
        try:
            return change_state(session, name, state, from_states, refuse)
        except StateChangeRefused as err:
            if err.unknown:
                _fail(command, f"no worker named {name!r} (see `airflow kestra workers list`)")
            _fail(command, str(err))


def workers_maintenance(args: argparse.Namespace) -> None:
    if args.on == args.off:
        _fail("maintenance", "give --on or --off")
    if args.on:
        row = _change_state("maintenance", args.name, *MAINTENANCE_ON, lambda row: None)
        already = row.state == "maintenance"
        print(
            f"worker {args.name!r} {'is already' if already else 'goes'} in maintenance: it claims "
            "nothing, its running tasks go on (`--off` to resume)"
        )
    else:
        row = _change_state("maintenance", args.name, *MAINTENANCE_OFF, lambda row: None)
        print(
            f"worker {args.name!r} {'was not in maintenance' if row.state == 'running' else 'claims again'}"
        )


def workers_drain(args: argparse.Namespace) -> None:
    row = _change_state("drain", args.name, *DRAIN, lambda row: drain_refusal(args.name, row))
    print(
        f"worker {args.name!r} (pid {row.pid} on {row.hostname}) drains: it claims nothing more and "
        "exits when its running tasks have ended"
    )


def workers_health(args: argparse.Namespace) -> None:
    """Exit 0 when the worker is registered, live and heartbeating within ``worker_timeout``."""
    from airflow_kestra_provider.models.tables import LIVE_WORKER_STATES
    from airflow_kestra_provider.queue import claims
    from airflow_kestra_provider.worker.worker import default_worker_name

    name = args.name or default_worker_name(embedded=False)
    timeout = settings.worker_timeout()
    with _session("health") as session:
        row = claims.worker_named(session, name)
    if row is None:
        _fail("health", f"no worker named {name!r} is registered")
    if row.state not in LIVE_WORKER_STATES:
        _fail("health", f"worker {name!r} is {row.state} (pid {row.pid} on {row.hostname})")
    if row.heartbeat_age > timeout:
        _fail(
            "health",
            f"worker {name!r} last heartbeat {row.heartbeat_age:.0f}s ago, more than "
            f"[kestra] worker_timeout ({timeout:.0f}s)",
        )
    print(f"worker {name!r} is {row.state}, heartbeat {row.heartbeat_age:.1f}s ago")
