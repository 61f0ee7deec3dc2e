"""LoopWork counts what a scheduling pass did through its session."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import update

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(run_id: str):
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    return DagRun(
        dag_id="one",
        run_id=run_id,
        run_type=DagRunType.MANUAL,
        run_after=datetime(2025, 1, 1, tzinfo=timezone.utc),
        state="queued",
    )


def test_nothing_done_counts_zero(session):
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    from airflow_kestra_provider.scheduler.work import LoopWork

    work = LoopWork()
    with work.watching(session):
        session.execute(select(DagRun)).all()
        session.flush()
    assert work.total == 0


def test_runs_created_started_and_ti_updates_are_counted(session):
    from airflow.models.taskinstance import TaskInstance

    from airflow_kestra_provider.scheduler.work import LoopWork

    work = LoopWork()
    with work.watching(session):
        run = _run("r1")
        session.add(run)
        session.flush()
        run.state = "running"
        session.flush()
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == "nothing")
            .values(state="scheduled")
            .execution_options(synchronize_session=False)
        )
    session.rollback()
    assert (work.dag_runs_created, work.dag_runs_changed, work.ti_updates) == (1, 1, 1)
    assert work.total == 3
    assert work.dag_runs_ended == 0


def test_runs_that_ended_are_counted_apart(session):
    from airflow_kestra_provider.scheduler.work import LoopWork

    runs = [_run("e1"), _run("e2")]
    session.add_all(runs)
    session.flush()
    work = LoopWork()
    with work.watching(session):
        runs[0].state = "success"
        runs[1].state = "running"
        session.flush()
        runs[1].state = "failed"
        session.flush()
    session.rollback()
    assert (work.dag_runs_changed, work.dag_runs_ended) == (3, 2)


def test_listeners_removed_after_the_block(session):
    from airflow_kestra_provider.scheduler.work import LoopWork

    work = LoopWork()
    with work.watching(session):
        pass
    session.add(_run("r2"))
    session.flush()
    session.rollback()
    assert work.total == 0


def test_dags_whose_max_active_runs_flag_was_cleared_are_counted(session):
    from airflow.models.dag import DagModel

    from airflow_kestra_provider.scheduler.work import LoopWork

    dags = [DagModel(dag_id=f"u{i}", bundle_name="bundle", exceeds_max_non_backfill=True) for i in range(3)]
    session.add_all(dags)
    session.flush()
    work = LoopWork()
    with work.watching(session):
        dags[0].exceeds_max_non_backfill = False  # a run ended below max_active_runs
        dags[1].exceeds_max_non_backfill = True  # still at the limit: no change
        dags[2].is_paused = True  # some other change
        session.flush()
    session.rollback()
    assert work.dags_unblocked == 1
    assert work.total == 0
