"""Synthetic ``kestra_workload`` rows at given ages, for the tests of the queue's statements and of
the UI page's API (through a session or a connection)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def add_row(
    session: Connection | Session,
    *,
    created: str,
    claimed: str | None = None,
    finished: str | None = None,
    result: str | None = None,
    dag_id: str = "d",
    queue: str = "default",
    started: str | None = None,
    try_number: int = 1,
) -> None:
    """A kestra_workload row whose times are ``now() - <interval>`` (None: not claimed / not ended);
    with ``started``, also its task instance (at ``try_number``) with that ``start_date``."""

    def at(ago: str | None) -> str:
        return "NULL" if ago is None else f"now() - interval '{ago}'"

    ti_id = str(uuid.uuid4())

    session.execute(
        sa.text(
            "INSERT INTO kestra_workload (id, ti_id, try_number, dag_id, task_id, run_id, map_index, queue,"
            " priority_weight, workload, created_at, claimed_at, finished_at, result, reported_at)"
            f" VALUES (:id, :ti, 1, :dag, 't', 'r', -1, :queue, 1, '{{}}', {at(created)}, {at(claimed)},"
            f" {at(finished)}, :result, {at(finished)})"
        ),
        {"id": str(uuid.uuid4()), "ti": ti_id, "dag": dag_id, "queue": queue, "result": result},
    )
    if started is not None:
        session.execute(
            sa.text(
                "INSERT INTO task_instance (id, try_number, state, start_date)"
                f" VALUES (:ti, :try, 'success', {at(started)})"
            ),
            {"ti": ti_id, "try": try_number},
        )
