"""``lock_queued_runs_to_start`` picks the same queued runs, in the same order, as Airflow's
``DagRun.get_queued_dag_runs_to_set_running`` (real SQLite schema; stock and ours on the same rows)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BASE = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


def _run(dag_id: str, n: int, state: str, **fields):
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    run = DagRun(
        dag_id=dag_id,
        run_id=f"{dag_id}_{state}_{n}",
        run_type=fields.pop("run_type", DagRunType.SCHEDULED),
        logical_date=BASE + datetime.timedelta(days=n),
        run_after=fields.pop("run_after", BASE + datetime.timedelta(days=n)),
        state=state,
    )
    for name, value in fields.items():
        setattr(run, name, value)
    return run


@pytest.fixture(scope="module")
def runs(session):
    """Queued runs that each filter and sort key of the stock query decides about."""
    from airflow.models.backfill import Backfill, BackfillDagRun
    from airflow.models.dag import DagModel
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    queued, running = DagRunState.QUEUED, DagRunState.RUNNING
    models = {m.dag_id: m for m in session.query(DagModel)}
    for model in models.values():
        model.is_stale = False  # a new DagModel is stale until the dag-processor sees it
    models["one"].max_active_runs = 16
    models["two"].max_active_runs = 2
    models["three"].max_active_runs = 16
    models["three"].is_paused = True  # its queued run is never started
    session.add(
        DagModel(dag_id="four", bundle_name="bundle", max_active_runs=1, is_stale=False)
    )  # at its limit
    session.add(DagModel(dag_id="five", bundle_name="bundle", max_active_runs=4, is_stale=True))
    session.flush()
    decided = BASE + datetime.timedelta(days=40)
    rows = [
        # "one": no running run (count NULL in the stock join, 0 here), mixed decisions
        _run("one", 1, queued),
        _run("one", 2, queued, last_scheduling_decision=decided),
        _run("one", 3, queued, last_scheduling_decision=decided - datetime.timedelta(hours=1)),
        _run("one", 4, queued, run_after=BASE + datetime.timedelta(days=3650)),  # not due yet
        # "two": one running of two allowed, so it sorts after "one" at equal decisions
        _run("two", 1, running),
        _run("two", 2, queued),
        _run("two", 3, queued, last_scheduling_decision=decided),
        _run("three", 1, queued),
        _run("four", 1, running),
        _run("four", 2, queued),  # max_active_runs reached
        _run("five", 1, queued),  # stale DAG
    ]
    session.add_all(rows)
    session.flush()
    # A backfill of "one" allowing one active run: its runs sort after every non-backfill run,
    # by sort ordinal; a backfill run counts against the backfill, not the DAG.
    backfill = Backfill(
        dag_id="one",
        from_date=BASE,
        to_date=BASE + datetime.timedelta(days=5),
        max_active_runs=1,
        dag_run_conf={},
    )
    session.add(backfill)
    session.flush()
    for n, ordinal in ((11, 2), (12, 1)):
        run = _run("one", n, queued, run_type=DagRunType.BACKFILL_JOB, backfill_id=backfill.id)
        session.add(run)
        session.flush()
        session.add(
            BackfillDagRun(
                backfill_id=backfill.id,
                dag_run_id=run.id,
                sort_ordinal=ordinal,
                logical_date=run.logical_date,
            )
        )
    session.commit()
    return rows


def _stock(session):
    from airflow.models.dagrun import DagRun

    return [run.run_id for run in DagRun.get_queued_dag_runs_to_set_running(session)]


def test_same_runs_in_the_same_order_as_the_stock_query(session, runs):
    from airflow_kestra_provider.scheduler.queued_runs import lock_queued_runs_to_start

    ours = [run.run_id for run in lock_queued_runs_to_start(session, 100)]
    session.rollback()
    assert ours == _stock(session)
    session.rollback()
    assert ours == [
        "one_queued_1",
        "two_queued_2",
        "one_queued_3",
        "one_queued_2",
        "two_queued_3",
        "one_queued_12",
        "one_queued_11",
    ]


def test_limit_and_a_backfill_at_its_limit(session, runs):
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState

    from airflow_kestra_provider.scheduler.queued_runs import lock_queued_runs_to_start

    assert [run.run_id for run in lock_queued_runs_to_start(session, 3)] == _stock(session)[:3]
    session.rollback()
    backfill_run = session.query(DagRun).filter(DagRun.run_id == "one_queued_12").one()
    backfill_run.state = DagRunState.RUNNING
    session.flush()
    ours = [run.run_id for run in lock_queued_runs_to_start(session, 100)]
    assert "one_queued_11" not in ours
    assert ours == _stock(session)
    session.rollback()


def test_the_statement_is_built_once_per_limit(session, runs):
    from airflow_kestra_provider.scheduler.queued_runs import _lock_query

    assert _lock_query(session, 7) is _lock_query(session, 7)
    assert _lock_query(session, 8) is not _lock_query(session, 7)


def test_the_stock_start_step_gets_the_given_runs_inside_the_block_only(session, runs):
    from airflow.models.dagrun import DagRun

    from airflow_kestra_provider.scheduler.queued_runs import lock_queued_runs_to_start, stock_start_gets

    stock = DagRun.__dict__["get_queued_dag_runs_to_set_running"]
    picked = lock_queued_runs_to_start(session, 2)
    with stock_start_gets(picked, session):
        # the stock start step calls it by this name
        assert list(DagRun.get_queued_dag_runs_to_set_running(session)) == picked
    session.rollback()
    assert DagRun.__dict__["get_queued_dag_runs_to_set_running"] is stock
    assert len(_stock(session)) == 7
    session.rollback()


def test_the_stock_start_step_counts_the_running_runs_of_the_given_runs_dags_only(session, runs):
    """Stock: the start step counts the running runs of every DAG. Inside the block the same
    statement is restricted to the DAGs of the given runs (the only ones it looks up); outside
    it the stock statement runs unchanged."""
    from airflow import settings
    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from sqlalchemy import event

    from airflow_kestra_provider.scheduler.queued_runs import lock_queued_runs_to_start, stock_start_gets
    from airflow_kestra_provider.scheduler.runner import KestraSchedulerJobRunner

    runner = KestraSchedulerJobRunner(job=Job(), executors=[LocalExecutor()])
    statements: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, *args) -> None:
        text = " ".join(statement.split())
        if text.startswith("SELECT dag_run.dag_id, dag_run.backfill_id, count(dag_run.id) AS num_running"):
            statements.append((text, parameters))

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        picked = lock_queued_runs_to_start(session, 2)
        with stock_start_gets(picked, session):
            SchedulerJobRunner._start_queued_dagruns(runner, session)
        session.rollback()
        SchedulerJobRunner._start_queued_dagruns(runner, session)  # the stock step on its own
        session.rollback()
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)
    assert len(statements) == 2
    (inside, parameters), (outside, _) = statements
    assert "dag_run.dag_id IN (" in inside
    assert sorted(p for p in parameters if isinstance(p, str) and p != "running") == sorted(
        {run.dag_id for run in picked}
    )
    assert " IN (" not in outside


def test_any_queued_run_due(session, runs):
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from sqlalchemy import update

    from airflow_kestra_provider.scheduler.queued_runs import any_queued_run_due

    assert any_queued_run_due(session)
    # Only runs not due yet (run_after in the future) are left queued: nothing to start.
    session.execute(
        update(DagRun)
        .where(DagRun.state == DagRunState.QUEUED, DagRun.run_id != "one_queued_4")
        .values(state=DagRunState.FAILED)
    )
    assert not any_queued_run_due(session)
    session.rollback()
    assert any_queued_run_due(session)
    session.rollback()


def test_runs_come_with_their_dag_rows(session, runs):
    from sqlalchemy import inspect

    from airflow_kestra_provider.scheduler.queued_runs import lock_queued_runs_to_start

    session.expire_all()
    picked = lock_queued_runs_to_start(session, 100)
    assert picked
    assert all("dag_model" not in inspect(run).unloaded for run in picked)
    assert {run.dag_id: run.max_active_runs for run in picked} == {"one": 16, "two": 2}
    session.rollback()
