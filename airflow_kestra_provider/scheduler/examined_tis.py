"""The task instances of a batch of examined dag runs, read with one query instead of one per run.

Examining a run starts with ``DagRun.task_instance_scheduling_decisions``, which reads the run's
task instances in every state (``get_task_instances(state=State.task_states)``: one query per run,
about a third of the examine step while many runs are running). :func:`load_task_instances` reads
those of a whole batch in one query, with the stock filter, order (``task_id``, ``map_index``) and
``joinedload(TI.dag_run)``, and :func:`serving` makes each run's next such call return its list.

Only that call is answered, and only once per run: any other call (another state filter, a partial
DAG, a second read in the same batch, a read after the batch's transaction was rolled back for a
retry) goes to the stock method, as does a run the caller
:func:`forget`s because it may have added task instances (``verify_integrity`` after a DAG change).
The rows are read at the start of the batch rather than just before each run's decision: a change
another process commits during the batch (tens of milliseconds) is seen by the next examination,
as it would be had it been committed just after the stock per-run read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.state import State
from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import joinedload

from airflow_kestra_provider.scheduler.run_methods import replaced

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

RunKey = tuple[str, str]
_ATTRIBUTE = "get_task_instances"  # the DagRun method the stock decision calls


def load_task_instances(runs: Iterable[DagRun], session: Session) -> dict[RunKey, list[TaskInstance]]:
    """Every task instance of ``runs`` in a state of ``State.task_states``, per (dag_id, run_id),
    each list in the stock order; one query."""
    keys = sorted({(run.dag_id, run.run_id) for run in runs})
    found: dict[RunKey, list[TaskInstance]] = {key: [] for key in keys}
    if not keys:
        return found
    states = [state for state in State.task_states if state is not None]
    query = (
        select(TaskInstance)
        .options(joinedload(TaskInstance.dag_run))
        .where(
            tuple_(TaskInstance.dag_id, TaskInstance.run_id).in_(keys),
            or_(TaskInstance.state.in_(states), TaskInstance.state.is_(None)),
        )
        .order_by(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index)
    )
    for ti in session.scalars(query):
        found[(ti.dag_id, ti.run_id)].append(ti)
    return found


def _answer_once(run: DagRun, tis: list[TaskInstance], session: Session) -> Callable[..., list[TaskInstance]]:
    stock = run.get_task_instances  # the bound stock method, kept for every other call
    read_in = session.get_transaction()

    def get_task_instances(state: Any = None, **kwargs: Any) -> list[TaskInstance]:
        forget(run)
        if (
            state == State.task_states
            and DagRun._get_partial_task_ids(run.dag) is None
            and session.get_transaction() is read_in  # not after a rollback (a retried batch)
        ):
            return list(tis)
        return stock(state=state, **kwargs)

    return get_task_instances


def forget(run: DagRun) -> None:
    """Let ``run``'s next read of its task instances go to the database."""
    run.__dict__.pop(_ATTRIBUTE, None)


def serving(
    runs: list[DagRun], tis: dict[RunKey, list[TaskInstance]], session: Session
) -> AbstractContextManager[None]:
    """Within the block, each run of ``runs`` answers its first ``get_task_instances`` for every
    state from ``tis``, read in ``session``'s current transaction (after a rollback, the stock
    method answers); on exit every run is back to the stock method."""

    def answer(run: DagRun) -> Callable[..., list[TaskInstance]] | None:
        found = tis.get((run.dag_id, run.run_id))
        return None if found is None else _answer_once(run, found, session)

    return replaced(runs, _ATTRIBUTE, answer)
