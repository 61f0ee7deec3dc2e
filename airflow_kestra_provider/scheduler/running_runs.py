"""Running dag runs: which a finished task instance is waiting on, and which run the newest DAG.

Airflow examines running dag runs never-examined first, then longest-unexamined first
(``DagRun.get_running_dag_runs_to_examine``). While many DAGs are due, every loop starts
new runs that are never examined yet, so a run whose tasks are all done waits behind them until
run creation is over. This query picks, oldest decision first, the running runs with a task
instance that ended after the run's last scheduling decision: exactly the runs whose
examination now moves them on (a downstream task to schedule, or a terminal state to set).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.taskinstancehistory import TaskInstanceHistory
from airflow.utils.sqlalchemy import with_row_locks
from airflow.utils.state import DagRunState
from sqlalchemy import Select, exists, func, select, tuple_, union
from sqlalchemy.sql import expression

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.orm import Session


def _runs_with_ended_tis() -> Select[tuple[DagRun]]:
    ended_since_decision = exists().where(
        TaskInstance.dag_id == DagRun.dag_id,
        TaskInstance.run_id == DagRun.run_id,
        TaskInstance.end_date > DagRun.last_scheduling_decision,
    )
    return (
        select(DagRun)
        .join(DagModel, DagModel.dag_id == DagRun.dag_id)
        .where(
            DagRun.state == DagRunState.RUNNING,
            DagRun.last_scheduling_decision.is_not(None),
            DagRun.run_after <= func.now(),
            DagModel.is_paused == expression.false(),
            DagModel.is_stale == expression.false(),
            ended_since_decision,
        )
        .order_by(DagRun.last_scheduling_decision)
    )


# Built once (statements are immutable): the scheduler asks in every loop.
_RUNS_WITH_ENDED_TIS = _runs_with_ended_tis()


def lock_runs_with_ended_tis(session: Session, limit: int, exclude: Collection[int] = ()) -> list[DagRun]:
    """Lock up to ``limit`` running dag runs (skipping rows another scheduler holds) that have a task
    instance whose ``end_date`` is after the run's ``last_scheduling_decision``; one query."""
    query = _RUNS_WITH_ENDED_TIS.limit(limit)
    if exclude:
        query = query.where(DagRun.id.not_in(list(exclude)))
    return list(session.scalars(with_row_locks(query, of=DagRun, session=session, skip_locked=True)).unique())


def runs_with_tis_of_versions(
    session: Session, runs: Collection[tuple[str, str, UUID]]
) -> set[tuple[str, str]]:
    """Of the given (dag_id, run_id, dag_version_id), the (dag_id, run_id) that have a task
    instance (or a task instance try in the history) of that version: the question
    ``DagRun.check_version_id_exists_in_dr`` asks per run, for a whole batch in one query."""
    if not runs:
        return set()
    triples = list(runs)
    current = select(TaskInstance.dag_id, TaskInstance.run_id).where(
        tuple_(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.dag_version_id).in_(triples)
    )
    history = select(TaskInstanceHistory.dag_id, TaskInstanceHistory.run_id).where(
        tuple_(
            TaskInstanceHistory.dag_id, TaskInstanceHistory.run_id, TaskInstanceHistory.dag_version_id
        ).in_(triples)
    )
    return {(dag_id, run_id) for dag_id, run_id in session.execute(union(current, history))}


def load_dag_models(dag_ids: Collection[str], session: Session) -> list[DagModel]:
    """The ``dag`` rows of ``dag_ids`` in one query, loaded into (or refreshed in) ``session``."""
    if not dag_ids:
        return []
    return list(session.scalars(select(DagModel).where(DagModel.dag_id.in_(list(dag_ids)))))
