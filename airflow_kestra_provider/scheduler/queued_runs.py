"""Queued dag runs to start: the rows and order of the stock query, planned for many queued runs.

``DagRun.get_queued_dag_runs_to_set_running`` joins the queued runs to a subquery that counts the
running runs of every DAG. While a burst of DAGs is due, ``dag_run`` holds far more queued and
running rows than when PostgreSQL last analyzed it, so the planner expects one queued row and puts
that subquery on the inner side of a nested loop: it is counted again for every queued run. Measured
on the benchmark database, 400 queued and 760 running runs: one call took 484 ms (304,000 rows
compared), and the stock start step makes one call per ``max_dagruns_per_loop_to_schedule`` runs.

:func:`lock_queued_runs_to_start` asks the same question with the count as a correlated subquery
per candidate (an index lookup on ``idx_dag_run_running_dags`` by dag_id), so its cost grows with
the queued runs only. Same filters (DAG neither paused nor stale, ``run_after`` passed, backfill not
paused, fewer running runs than ``max_active_runs`` of the backfill or else of the DAG), same order
(backfill ``sort_ordinal``, ``last_scheduling_decision``, running count, ``run_after``; a DAG with no
running run counts 0 where the stock join gives NULL, and both sort first), same
``FOR UPDATE ... SKIP LOCKED``. The runs' ``dag`` rows come with them (one more query), which the
stock start step reads per run through ``dag_run.max_active_runs``: after the creation step's
commit they are expired, and each was reloaded with its own query.

:func:`stock_start_gets` hands its answer to the stock ``_start_queued_dagruns`` and restricts that
method's count of running runs per DAG to the DAGs of the runs it starts (the only counts it reads):
everything else it does (backfill locks, the ``max_active_runs`` recheck, ``dagrun.schedule_delay``,
listeners) stays Airflow's. When :func:`any_queued_run_due` finds no queued run, the scheduler
skips the step: the stock method would only have counted every DAG's running runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeGuard

from airflow.models.backfill import Backfill, BackfillDagRun
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.utils.retries import retry_db_transaction
from airflow.utils.sqlalchemy import get_dialect_name, nulls_first, with_row_locks
from airflow.utils.state import DagRunState
from sqlalchemy import Select, and_, event, false, func, select
from sqlalchemy.orm import aliased, selectinload

if TYPE_CHECKING:
    from sqlalchemy.orm import ORMExecuteState, Session


_ANY_QUEUED_DUE = (
    select(DagRun.id).where(DagRun.state == DagRunState.QUEUED, DagRun.run_after <= func.now()).limit(1)
)


def any_queued_run_due(session: Session) -> bool:
    """Whether any dag run is queued with ``run_after`` passed: one lookup on the partial index
    of queued runs, far cheaper than the locking query when nothing is queued (most loops)."""
    return session.scalar(_ANY_QUEUED_DUE) is not None


@retry_db_transaction
def lock_queued_runs_to_start(session: Session, limit: int) -> list[DagRun]:
    """Lock up to ``limit`` queued dag runs the scheduler may start, in the stock order (one query)."""
    return list(session.scalars(_lock_query(session, limit)))


# Built once per dialect and limit: building the statement (a correlated count, coalesces, four
# order terms) cost about as much Python time as loading the run it usually returns.
_LOCK_QUERIES: dict[tuple[str | None, int], Select[Any]] = {}


def _lock_query(session: Session, limit: int) -> Select[Any]:
    key = (get_dialect_name(session), limit)
    query = _LOCK_QUERIES.get(key)
    if query is None:
        query = _LOCK_QUERIES[key] = _build_lock_query(session, limit)
    return query


def _build_lock_query(session: Session, limit: int) -> Select[Any]:
    running = aliased(DagRun)
    num_running = (
        select(func.count(running.id))
        .where(
            running.state == DagRunState.RUNNING,
            running.dag_id == DagRun.dag_id,
            func.coalesce(running.backfill_id, -1) == func.coalesce(DagRun.backfill_id, -1),
        )
        .correlate(DagRun)
        .scalar_subquery()
    )
    query = (
        select(DagRun)
        .join(
            DagModel,
            and_(
                DagModel.dag_id == DagRun.dag_id, DagModel.is_paused == false(), DagModel.is_stale == false()
            ),
        )
        .join(
            BackfillDagRun,
            and_(BackfillDagRun.dag_run_id == DagRun.id, BackfillDagRun.backfill_id == DagRun.backfill_id),
            isouter=True,
        )
        .join(Backfill, Backfill.id == BackfillDagRun.backfill_id, isouter=True)
        .where(
            DagRun.state == DagRunState.QUEUED,
            DagRun.run_after <= func.now(),
            num_running < func.coalesce(Backfill.max_active_runs, DagModel.max_active_runs),
            ~func.coalesce(Backfill.is_paused, false()),
        )
        .order_by(
            nulls_first(BackfillDagRun.sort_ordinal.expression, session=session),
            nulls_first(DagRun.last_scheduling_decision.expression, session=session),
            num_running,
            DagRun.run_after,
        )
        .limit(limit)
        # The stock start step reads ``dag_run.max_active_runs`` (the DAG row) per run: load
        # those rows with one more query instead of one lazy load per run.
        .options(selectinload(DagRun.dag_model))
    )
    return with_row_locks(query, of=DagRun, session=session, skip_locked=True)


def is_running_count_by_dag(statement: Any) -> TypeGuard[Select[Any]]:
    """Whether ``statement`` is the stock start step's count of running runs per (dag_id,
    backfill_id): a SELECT of those two columns and ``num_running`` from ``dag_run`` alone."""
    return (
        isinstance(statement, Select)
        and [column.name for column in statement.selected_columns] == ["dag_id", "backfill_id", "num_running"]
        and statement.get_final_froms() == [DagRun.__table__]
    )


@contextmanager
def stock_start_gets(runs: list[DagRun], session: Session) -> Iterator[None]:
    """Within the block, the stock ``_start_queued_dagruns``:

    * gets ``runs`` from ``DagRun.get_queued_dag_runs_to_set_running`` (which it calls by class
      attribute), taken beforehand with :func:`lock_queued_runs_to_start`;
    * counts the running runs of those runs' DAGs only. The stock count covers every DAG, and it
      only ever looks up the DAGs of the runs it starts: with tens of thousands of runs running,
      building that count was a fifth of the scheduler's CPU time. The restriction is added by
      ``session``'s ``do_orm_execute`` event to the statement :func:`is_running_count_by_dag`
      recognises; any other statement runs unchanged.

    The scheduler loop is the stock method's only caller in the scheduler process and runs in
    one thread; the stock method and the session are back as they were on exit."""
    stock = DagRun.__dict__["get_queued_dag_runs_to_set_running"]
    dag_ids = sorted({run.dag_id for run in runs})

    def ours(cls: type[DagRun], session: Session, **_: Any) -> list[DagRun]:
        return runs

    def count_these_dags_only(state: ORMExecuteState) -> None:
        statement = state.statement
        if is_running_count_by_dag(statement):
            state.statement = statement.where(DagRun.dag_id.in_(dag_ids))

    DagRun.get_queued_dag_runs_to_set_running = classmethod(ours)  # type: ignore[method-assign,assignment]
    event.listen(session, "do_orm_execute", count_these_dags_only)
    try:
        yield
    finally:
        event.remove(session, "do_orm_execute", count_these_dags_only)
        DagRun.get_queued_dag_runs_to_set_running = stock  # type: ignore[method-assign]
