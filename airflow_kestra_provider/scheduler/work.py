"""What one scheduler loop did, counted from the session it scheduled through.

The stock loop only calls a loop busy when it queued task instances or (in intent) processed
executor events; creating or starting dag runs and scheduling task instances do not count, so
each of those hops may wait a whole idle sleep. :class:`LoopWork` watches the scheduling
session instead: every dag run inserted or whose state changed is flushed through it, and every
task-instance state change the scheduler makes is an ORM ``UPDATE task_instance`` executed
through it (``DagRun.schedule_tis``, the critical section's ``QUEUED`` update).

Besides the counts, it keeps what tells whether the next loop must start at once (see the
runner's ``_follow_up_due``): runs that ended, and whether a step stopped with work left; and
DAGs whose ``exceeds_max_non_backfill`` flag this loop cleared (a run of theirs ended below
``max_active_runs``), which may get a new run at once (see the runner's creation step).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.state import State
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session


@dataclass
class LoopWork:
    dag_runs_created: int = 0
    dag_runs_changed: int = 0
    ti_updates: int = 0
    tis_queued: int = 0
    executor_events: int = 0
    dag_runs_ended: int = 0  # of the changed ones: now success or failed
    capped: bool = False  # a step stopped at its batch or time budget with more left
    critical_capped: bool = False  # the critical section queued as many as it could take
    dags_unblocked: int = 0  # DAGs whose exceeds_max_non_backfill went from true to false

    @property
    def total(self) -> int:
        return (
            self.dag_runs_created
            + self.dag_runs_changed
            + self.ti_updates
            + self.tis_queued
            + self.executor_events
        )

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        self.dag_runs_created += sum(1 for obj in session.new if isinstance(obj, DagRun))
        for obj in session.dirty:
            if isinstance(obj, DagRun) and inspect(obj).attrs["_state"].history.has_changes():
                self.dag_runs_changed += 1
                self.dag_runs_ended += obj.state in State.finished_dr_states
            elif (
                isinstance(obj, DagModel)
                and not obj.exceeds_max_non_backfill
                and inspect(obj).attrs["exceeds_max_non_backfill"].history.has_changes()
            ):
                self.dags_unblocked += 1

    def _on_execute(self, state: ORMExecuteState) -> None:
        if state.is_update and state.bind_mapper is not None and state.bind_mapper.class_ is TaskInstance:
            self.ti_updates += 1

    @contextmanager
    def watching(self, session: Session) -> Iterator[LoopWork]:
        """Count what is flushed and executed through ``session`` inside the block."""
        event.listen(session, "before_flush", self._before_flush)
        event.listen(session, "do_orm_execute", self._on_execute)
        try:
            yield self
        finally:
            event.remove(session, "before_flush", self._before_flush)
            event.remove(session, "do_orm_execute", self._on_execute)
