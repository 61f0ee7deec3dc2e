"""Bulk dag run creation writes the same rows as Airflow's own ``create_dagrun`` (real SQLite schema).

The same DAG gets its next scheduled run once through the stock path and once through the bulk
path; the ``dag_run`` and ``task_instance`` rows and the ``dag`` row's next-run fields must match
column by column (except surrogate ids, ``queued_at`` and the random trace ids).
"""

from __future__ import annotations

import datetime
import time

import pytest
from airflow.utils.sqlalchemy import prohibit_commit

from tests.unit.metadata import register_dag

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
# Columns that differ between any two runs created at different instants.
RUN_SKIP = {"id", "queued_at", "created_at", "updated_at", "context_carrier"}
TI_SKIP = {"id", "updated_at", "context_carrier"}
DAG_NEXT = (
    "next_dagrun",
    "next_dagrun_create_after",
    "next_dagrun_data_interval_start",
    "next_dagrun_data_interval_end",
    "exceeds_max_non_backfill",
)


def _plain_dag(dag_id: str):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG(dag_id, schedule="@daily", start_date=START, catchup=False, params={"x": 1}) as dag:
        first = EmptyOperator(task_id="first", pool="default_pool", priority_weight=3, retries=2)
        second = EmptyOperator(task_id="second", queue="other", weight_rule="upstream")
        EmptyOperator(task_id="later", start_date=datetime.datetime(2999, 1, 1, tzinfo=datetime.timezone.utc))
        first >> second
    return dag


def _mapped_dag(dag_id: str):
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG

    with DAG(dag_id, schedule="@daily", start_date=START, catchup=False) as dag:
        BashOperator.partial(task_id="mapped").expand(bash_command=["true", "true"])
    return dag


@pytest.fixture
def runner(session):
    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.job import Job

    from airflow_kestra_provider.scheduler.runner import KestraSchedulerJobRunner

    job = Job()
    job.id = 4242
    return KestraSchedulerJobRunner(job=job, executors=[LocalExecutor()])


def _reset_next_run(runner, session, model) -> None:
    dag = runner.dag_cache.get_latest(model.dag_id, session)
    model.calculate_dagrun_date_fields(dag=dag, reference_run=None)
    model.exceeds_max_non_backfill = False
    session.commit()


def _bulk_created(runner, session, dag_ids: list[str], *, budget: float = 60.0) -> None:
    """Register plain due DAGs and create their runs through the bulk path (one pass)."""
    from airflow.models.dag import DagModel

    models = [register_dag(session, _plain_dag(dag_id)) for dag_id in dag_ids]
    for model in models:
        _reset_next_run(runner, session, model)
    runner._bulk_create = True
    runner._loop_budget = budget
    with prohibit_commit(session) as guard:
        runner._create_timed_runs([session.get(DagModel, m.dag_id) for m in models], guard, session)
        guard.commit()


def _snapshot(session, dag_id: str):
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    session.expire_all()
    runs = session.execute(select(DagRun.__table__).where(DagRun.dag_id == dag_id)).mappings().all()
    tis = (
        session.execute(
            select(TaskInstance.__table__).where(TaskInstance.dag_id == dag_id).order_by(TaskInstance.task_id)
        )
        .mappings()
        .all()
    )
    model = session.get(DagModel, dag_id)
    return (
        [{k: v for k, v in r.items() if k not in RUN_SKIP} for r in runs],
        [{k: v for k, v in t.items() if k not in TI_SKIP} for t in tis],
        {name: getattr(model, name) for name in DAG_NEXT},
        [(r["queued_at"], r["context_carrier"]) for r in runs],
        [t["context_carrier"] for t in tis],
    )


def _delete_runs(session, dag_id: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import delete

    session.execute(delete(TaskInstance).where(TaskInstance.dag_id == dag_id))
    session.execute(delete(DagRun).where(DagRun.dag_id == dag_id))
    session.commit()


def _create(runner, session, dag_id: str, *, bulk: bool) -> None:
    from airflow.models.dag import DagModel

    runner._bulk_create = bulk
    model = session.get(DagModel, dag_id)
    with prohibit_commit(session) as guard:  # the scheduler's guard: only guard.commit() may commit
        runner._create_timed_runs([model], guard, session)
        guard.commit()


def _examined_statements(runner, session, examine, runs) -> list[str]:
    """The SQL statements (whitespace collapsed) that ``examine(guard, runs, session)`` runs as one
    batch, from a fresh per-batch state."""
    from airflow import settings
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        with prohibit_commit(session) as guard:
            runner._begin_batch()
            examine(guard, runs, session)
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)
    return statements


def test_bulk_rows_equal_the_rows_of_create_dagrun(runner, session):
    from airflow_kestra_provider.scheduler import bulk_runs

    model = register_dag(session, _plain_dag("bulk_same_rows"), bundle_version="v7")
    _reset_next_run(runner, session, model)
    due = model.next_dagrun
    assert due is not None

    dags = runner.dag_cache.get_latest_with_versions([model.dag_id], session)
    plan = bulk_runs.split([model], dags, session)
    assert [m.dag_id for m, _, _ in plan.bulk] == ["bulk_same_rows"] and plan.stock == []

    from airflow_kestra_provider.scheduler.work import LoopWork

    stock_work = runner._loop = LoopWork()
    with stock_work.watching(session):
        _create(runner, session, "bulk_same_rows", bulk=False)
    stock_runs, stock_tis, stock_next, stock_stamps, stock_carriers = _snapshot(session, "bulk_same_rows")
    _delete_runs(session, "bulk_same_rows")
    _reset_next_run(runner, session, session.get(type(model), "bulk_same_rows"))

    assert runner.dag_runs_created_in_bulk == 0
    bulk_work = runner._loop = LoopWork()
    with bulk_work.watching(session):
        _create(runner, session, "bulk_same_rows", bulk=True)
    assert runner.dag_runs_created_in_bulk == 1  # written by the bulk path, not the stock fallback
    # The loop counts the new run either way (the bulk INSERT bypasses the flush it watches).
    assert stock_work.dag_runs_created == bulk_work.dag_runs_created == 1
    bulk_runs_rows, bulk_tis, bulk_next, bulk_stamps, bulk_carriers = _snapshot(session, "bulk_same_rows")

    assert len(stock_runs) == 1
    run = stock_runs[0]
    assert run["state"] == "queued" and run["run_type"] == "scheduled" and run["creating_job_id"] == 4242
    assert run["bundle_version"] == "v7" and run["created_dag_version_id"] is not None
    assert run["logical_date"] == due
    assert {k for k in run if bulk_runs_rows[0][k] != run[k]} == set()
    assert bulk_runs_rows == stock_runs
    # "later" starts in 2999: neither path creates its TI.
    assert [t["task_id"] for t in stock_tis] == ["first", "second"]
    assert [{k for k in t if b[k] != t[k]} for b, t in zip(bulk_tis, stock_tis, strict=True)] == [
        set(),
        set(),
    ]
    assert bulk_tis == stock_tis
    assert bulk_next == stock_next
    assert bulk_next["next_dagrun"] > due
    # queued_at is set, and both paths write a trace carrier for the run and each TI.
    assert all(stamp is not None and carrier for stamp, carrier in stock_stamps + bulk_stamps)
    assert all(stock_carriers) and all(bulk_carriers)
    assert {frozenset(c) for c in bulk_carriers} == {frozenset(c) for c in stock_carriers}


def test_unusual_dags_go_to_the_stock_path(runner, session):

    from airflow_kestra_provider.scheduler import bulk_runs

    mapped = register_dag(session, _mapped_dag("bulk_mapped"))
    full = register_dag(session, _plain_dag("bulk_full"))
    plain = register_dag(session, _plain_dag("bulk_plain"))
    exists = register_dag(session, _plain_dag("bulk_exists"))
    for model in (mapped, full, plain, exists):
        _reset_next_run(runner, session, model)
    runner._bulk_create = False
    with prohibit_commit(session) as guard:
        runner._create_timed_runs([exists], guard, session)  # a run for its next date exists already ...
    session.commit()
    _reset_next_run(runner, session, exists)  # ... and next_dagrun points at that date again
    full.exceeds_max_non_backfill = True
    session.commit()

    models = [mapped, full, plain, exists]
    dags = runner.dag_cache.get_latest_with_versions([m.dag_id for m in models], session)
    plan = bulk_runs.split(models, dags, session)
    assert [m.dag_id for m, _, _ in plan.bulk] == ["bulk_plain"]
    assert sorted(m.dag_id for m in plan.stock) == ["bulk_exists", "bulk_full", "bulk_mapped"]


def test_mapped_dag_still_gets_its_run_through_the_stock_path(runner, session):
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    model = register_dag(session, _mapped_dag("bulk_mapped_run"))
    _reset_next_run(runner, session, model)
    _create(runner, session, "bulk_mapped_run", bulk=True)
    assert runner.dag_runs_created_in_bulk == 0
    runs = session.scalars(select(DagRun).where(DagRun.dag_id == "bulk_mapped_run")).all()
    assert len(runs) == 1 and runs[0].state == "queued"
    tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "bulk_mapped_run")).all()
    assert {(t.task_id, t.map_index) for t in tis} == {("mapped", 0), ("mapped", 1)}


def test_starting_and_examining_runs_is_not_capped_at_one_batch_per_loop(runner, session):
    """Stock: at most max_dagruns_per_loop_to_schedule (20) runs started and examined per loop.
    Ours: further batches of 20 until the loop budget is spent."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import func, select

    assert DagRun.DEFAULT_DAGRUNS_TO_EXAMINE == 20
    count = 45
    _bulk_created(runner, session, [f"bulk_many_{i:02d}" for i in range(count)])
    assert runner.dag_runs_created_in_bulk == count
    with prohibit_commit(session) as guard:

        def states() -> dict[str, int]:
            rows = session.execute(
                select(DagRun.state, func.count())
                .where(DagRun.dag_id.like("bulk\\_many\\_%", escape="\\"))
                .group_by(DagRun.state)
            )
            return {state: n for state, n in rows}

        assert states() == {"queued": count}
        runner._start_queued_dagruns(session)
        guard.commit()
        assert states() == {"running": count}

        mine = set(
            session.scalars(select(DagRun.id).where(DagRun.dag_id.like("bulk\\_many\\_%", escape="\\")))
        )
        first = list(DagRun.get_running_dag_runs_to_examine(session=session))
        assert len(first) == DagRun.DEFAULT_DAGRUNS_TO_EXAMINE
        callbacks = runner._schedule_all_dag_runs(guard, first, session)
        examined = [run.id for run, _ in callbacks]
        assert len(examined) == len(set(examined))  # each run at most once per loop
        assert mine <= set(examined)


def test_runs_examined_before_are_examined_again_one_batch_per_loop(runner, session):
    """Never-examined runs are examined batch after batch (previous test); runs examined before
    in which nothing ended are looked at again one stock batch (20) per loop, as stock, not all of
    them every recheck interval."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select, update

    count = 45
    _bulk_created(runner, session, [f"bulk_again_{i:02d}" for i in range(count)])
    runner._recheck = 1.0
    with prohibit_commit(session) as guard:
        runner._start_queued_dagruns(session)
        mine = DagRun.dag_id.like("bulk\\_again\\_%", escape="\\")
        long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
        session.execute(update(DagRun).where(mine).values(last_scheduling_decision=long_ago))
        guard.commit()
        ids = set(session.scalars(select(DagRun.id).where(mine)))

        first = list(DagRun.get_running_dag_runs_to_examine(session=session))
        examined = {run.id for run, _ in runner._schedule_all_dag_runs(guard, first, session)}
        assert len(examined & ids) == DagRun.DEFAULT_DAGRUNS_TO_EXAMINE
        first = list(DagRun.get_running_dag_runs_to_examine(session=session))
        examined |= {run.id for run, _ in runner._schedule_all_dag_runs(guard, first, session)}
        assert len(examined & ids) == 2 * DagRun.DEFAULT_DAGRUNS_TO_EXAMINE  # the next batch


def test_runs_a_finished_task_waits_on_are_examined_before_never_examined_ones(runner, session):
    """While bulk creation keeps starting never-examined runs (the stock examine order puts them
    first), a run whose task ended since its last decision is still finished in the same loop,
    even with no loop budget left."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import func, select, update

    count = 45
    _bulk_created(runner, session, [f"bulk_fair_{i:02d}" for i in range(count)], budget=0.0)
    with prohibit_commit(session) as guard:  # (budget 0: each step does one batch per call)
        for _ in range(3):
            runner._start_queued_dagruns(session)
        guard.commit()
        assert (
            session.scalar(
                select(func.count()).where(
                    DagRun.state == "running", DagRun.dag_id.like("bulk\\_fair\\_%", escape="\\")
                )
            )
            == count
        )
        # One run was examined earlier; since then all its tasks ended.
        done = session.scalars(select(DagRun).where(DagRun.dag_id == "bulk_fair_44")).one()
        decided = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
        done.last_scheduling_decision = decided
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == "bulk_fair_44")
            .values(state="success", start_date=decided, end_date=decided + datetime.timedelta(seconds=1))
        )
        guard.commit()
        done_id = done.id

        first = list(DagRun.get_running_dag_runs_to_examine(session=session))
        assert done_id not in {run.id for run in first}  # the stock order reaches it last
        callbacks = runner._schedule_all_dag_runs(guard, first, session)
        examined = [run.id for run, _ in callbacks]
        assert done_id in examined
        assert len(examined) == len(set(examined))
    assert session.get(DagRun, done_id).state == "success"


def test_examining_a_batch_checks_dag_versions_with_one_query_and_still_verifies_changed_dags(
    runner, session
):
    """Stock: two newest-version queries and one "run has TIs of that version" query per run.
    Ours: one of each per batch; a run whose DAG got a new version still gets its TIs moved to it."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from sqlalchemy import event, select

    ids = [f"bulk_version_{i}" for i in range(3)]
    _bulk_created(runner, session, ids)
    runs = list(session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids))))
    assert len(runs) == 3
    # The last DAG changes (a task added): the stock check finds its run's TIs on an old version.
    with DAG(ids[-1], schedule="@daily", start_date=START, catchup=False, params={"x": 1}) as changed:
        EmptyOperator(task_id="first")
        EmptyOperator(task_id="added")
    SerializedDagModel.write_dag(LazyDeserializedDAG.from_dag(changed), bundle_name="bundle", session=session)
    session.commit()
    for run in runs:
        session.refresh(run)

    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        with prohibit_commit(session) as guard:
            runner._begin_batch()
            assert [runner._verify_integrity_if_dag_changed(run, session) for run in runs] == [True] * 3
            guard.commit()
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)
    version_checks = [s for s in statements if "task_instance_history" in s]
    assert len(version_checks) == 2  # one for the batch, one stock check for the changed run only
    newest = [s for s in statements if "max(dag_version.version_number)" in s]
    assert len(newest) == 1
    task_ids = set(session.scalars(select(TaskInstance.task_id).where(TaskInstance.dag_id == ids[-1])))
    assert "added" in task_ids


def test_unchanged_runs_and_the_critical_section_wait_for_the_recheck_interval(runner, session):
    """A loop in which nothing changed neither re-examines recently examined runs nor runs the
    critical section; after ``scheduler_recheck_interval`` both happen again."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from sqlalchemy import event, select

    from airflow_kestra_provider.scheduler.work import LoopWork

    model = register_dag(session, _mapped_dag("bulk_recheck"))  # tasks that really run (not EmptyOperator)
    _reset_next_run(runner, session, model)
    runner._recheck = 30.0
    with prohibit_commit(session) as guard:
        runner._create_timed_runs([session.get(DagModel, "bulk_recheck")], guard, session)
        runner._start_queued_dagruns(session)
        guard.commit()
        run = session.scalars(select(DagRun).where(DagRun.dag_id == "bulk_recheck")).one()
        run_id = run.id

        def examined() -> list[int]:  # (other tests' runs may be taken too)
            return [r.id for r, _ in runner._schedule_all_dag_runs(guard, [run], session)]

        assert run_id in examined()
        assert run.last_scheduling_decision is not None
        # examined a moment ago, no task ended since: skipped
        assert run_id not in examined()
        run.last_scheduling_decision -= datetime.timedelta(seconds=31)
        guard.commit()
        assert run_id in examined()

    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    def critical_sections() -> int:
        return sum("slot_pool" in s for s in statements)

    runner._loop = LoopWork()
    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        with prohibit_commit(session) as guard:
            runner._critical_due = True
            runner._critical_section_enqueue_task_instances(session)
            guard.commit()
            assert critical_sections() >= 1
            before = critical_sections()
            assert runner._critical_section_enqueue_task_instances(session) == 0
            assert critical_sections() == before  # nothing changed: skipped
            runner._loop.ti_updates = 1  # this loop scheduled a task instance
            runner._critical_section_enqueue_task_instances(session)
            guard.commit()
            assert critical_sections() > before
            runner._loop = LoopWork()
            before = critical_sections()
            runner._critical_at -= 31  # the recheck interval has passed
            runner._critical_section_enqueue_task_instances(session)
            guard.commit()
            assert critical_sections() > before
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)


def test_a_due_critical_section_with_nothing_scheduled_is_one_small_query(runner, session):
    """Woken by a task that ended, with no task instance scheduled anywhere, the critical
    section asks that with one lookup and skips the stock pass (pool lock, big query); with one
    scheduled, or once the recheck interval has passed, the stock pass runs."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import event, select, update

    from airflow_kestra_provider.scheduler.work import LoopWork

    model = register_dag(session, _mapped_dag("bulk_nothing_scheduled"))
    _reset_next_run(runner, session, model)
    runner._recheck = 30.0
    runner._critical_at = time.monotonic()  # a pass ran a moment ago
    with prohibit_commit(session) as guard:
        runner._create_timed_runs([session.get(DagModel, "bulk_nothing_scheduled")], guard, session)
        guard.commit()
    ours = TaskInstance.dag_id == "bulk_nothing_scheduled"
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    def passes() -> int:
        return sum("slot_pool" in s for s in statements)

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        for state, stock_pass in (("scheduled", True), (None, False)):
            session.execute(update(TaskInstance).where(ours).values(state=state))
            session.execute(  # and none of other tests' runs either
                update(TaskInstance).where(~ours, TaskInstance.state == "scheduled").values(state=None)
            )
            session.flush()
            runner._loop = LoopWork()
            runner._critical_due = True  # a notification said slots were freed
            statements.clear()
            with prohibit_commit(session) as guard:
                runner._critical_section_enqueue_task_instances(session)
                guard.commit()
            assert (passes() >= 1) is stock_pass
            if not stock_pass:
                assert len(statements) == 1 and "task_instance" in statements[0]
                assert runner._critical_due is False and runner._critical_capped is False
            assert session.scalars(select(TaskInstance.state).where(ours)).first() in (state, "queued")
            session.execute(update(TaskInstance).where(ours).values(state=None))
        runner._critical_at -= 31  # the recheck interval has passed: the stock pass, as stock
        runner._critical_due = True
        statements.clear()
        with prohibit_commit(session) as guard:
            runner._critical_section_enqueue_task_instances(session)
            guard.commit()
        assert passes() >= 1
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)


def test_examining_a_batch_reads_its_dag_rows_with_one_query(runner, session):
    """The stock step reads each run's ``dag`` row with ``session.get``; after a commit each is a
    query of its own. Ours loads the batch's rows first, so none of those per-run reads queries."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    def dag_reads(examine, dag_ids: list[str]) -> tuple[int, int]:
        runs = list(session.scalars(select(DagRun).where(DagRun.dag_id.in_(dag_ids))))
        session.commit()  # as between two batches: every loaded object is expired
        statements = _examined_statements(runner, session, examine, runs)
        from_dag = [s for s in statements if " FROM dag WHERE dag.dag_id" in s]
        return (
            sum(1 for s in from_dag if "dag.dag_id = " in s),
            sum(1 for s in from_dag if "dag.dag_id IN " in s),
        )

    stock_ids = [f"bulk_stock_reads_{i}" for i in range(3)]
    ours_ids = [f"bulk_ours_reads_{i}" for i in range(3)]
    _bulk_created(runner, session, stock_ids + ours_ids)
    stock = dag_reads(lambda g, r, s: SchedulerJobRunner._schedule_all_dag_runs(runner, g, r, s), stock_ids)
    ours = dag_reads(runner._examine_batch, ours_ids)
    assert stock == (3, 0)
    assert ours == (0, 1)


def test_starting_runs_with_none_queued_is_one_small_query(runner, session):
    """The stock start step counts every DAG's running runs even when nothing is queued; ours
    asks the partial index of queued runs once and stops there."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from sqlalchemy import event, update

    session.execute(update(DagRun).where(DagRun.state == DagRunState.QUEUED).values(state=DagRunState.FAILED))
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        runner._start_queued_dagruns(session)
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)
        session.rollback()
    assert len(statements) == 1
    assert "count(" not in statements[0].lower()


def test_examining_a_batch_reads_its_task_instances_with_one_query_and_decides_as_stock(runner, session):
    """The stock decision reads each run's task instances with a query of its own; ours reads the
    batch's in one query. Same starting states, same outcome: run states and TI states match."""
    import functools

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select, update

    def outcome(examine, prefix: str) -> tuple[int, list[tuple[str, str]], list[tuple[str, str | None]]]:
        ids = [f"{prefix}_{i}" for i in range(4)]
        runs = list(session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids)).order_by(DagRun.dag_id)))
        # run 0: nothing ran yet; run 1: first done; run 2: both done; run 3: first failed
        session.execute(update(DagRun).where(DagRun.dag_id.in_(ids)).values(state="running"))
        for dag_id, states in zip(
            ids[1:],
            [{"first": "success"}, {"first": "success", "second": "success"}, {"first": "failed"}],
            strict=True,
        ):
            for task_id, state in states.items():
                session.execute(
                    update(TaskInstance)
                    .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
                    .values(state=state)
                )
        session.commit()
        statements = _examined_statements(runner, session, examine, runs)
        # the decision's read: every state of the run's TIs (the dependency checks read others)
        ti_reads = sum(1 for s in statements if "OR task_instance.state IS NULL) ORDER BY" in s)
        session.expire_all()
        run_states = [
            (run.dag_id.removeprefix(prefix), run.state)
            for run in session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids)).order_by(DagRun.dag_id))
        ]
        ti_states = [
            (f"{dag_id.removeprefix(prefix)}.{task_id}", state)
            for dag_id, task_id, state in session.execute(
                select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.state)
                .where(TaskInstance.dag_id.in_(ids))
                .order_by(TaskInstance.dag_id, TaskInstance.task_id)
            )
        ]
        return ti_reads, run_states, ti_states

    # These DAGs are EmptyOperators: one examination each, without the immediate re-examination
    # (test_emptyoperator_hops_are_decided_in_the_same_examination), which reads them again.
    runner._schedule_dag_run = functools.partial(SchedulerJobRunner._schedule_dag_run, runner)
    _bulk_created(
        runner, session, [f"bulk_stock_tis_{i}" for i in range(4)] + [f"bulk_ours_tis_{i}" for i in range(4)]
    )
    stock = outcome(
        lambda g, r, s: SchedulerJobRunner._schedule_all_dag_runs(runner, g, r, s), "bulk_stock_tis"
    )
    ours = outcome(runner._examine_batch, "bulk_ours_tis")
    assert stock[1:] == ours[1:]
    assert {state for _, state in ours[1]} == {"running", "success"}
    assert {state for _, state in ours[2]} == {None, "success", "failed", "upstream_failed"}
    assert stock[0] == 4  # one read per run
    assert ours[0] == 1


def test_prefetched_task_instances_answer_one_read_per_run_and_nothing_else(runner, session):
    """Only the decision's read (every state, full DAG) is answered, once per run; other reads, a
    run the caller forgets, and every read after the block go to the database."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import State
    from sqlalchemy import event, select

    from airflow_kestra_provider.scheduler import examined_tis

    ids = [f"bulk_served_{i}" for i in range(3)]
    _bulk_created(runner, session, ids)
    runs = list(session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids)).order_by(DagRun.dag_id)))
    for run in runs:
        run.dag = runner.dag_cache.get_latest(run.dag_id, session)
    tis = examined_tis.load_task_instances(runs, session)
    assert [sorted(ti.task_id for ti in tis[(r.dag_id, r.run_id)]) for r in runs] == [["first", "second"]] * 3
    reads: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        reads.append(statement)

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        with examined_tis.serving(runs, tis, session):
            first, second, third = runs
            examined_tis.forget(third)
            assert [
                ti.task_id for ti in first.get_task_instances(state=State.task_states, session=session)
            ] == [
                "first",
                "second",
            ]
            assert reads == []
            first.get_task_instances(state=State.task_states, session=session)  # a second read
            assert len(reads) == 1
            second.get_task_instances(state=State.unfinished, session=session)  # another filter
            assert len(reads) == 2
            second.get_task_instances(state=State.task_states, session=session)  # its one answer was used
            third.get_task_instances(state=State.task_states, session=session)  # forgotten
            assert len(reads) == 4
        tis = examined_tis.load_task_instances(runs, session)
        reads.clear()
        with examined_tis.serving(runs, tis, session):
            session.rollback()  # as before a retry of the batch: the rows read may be stale
            first.get_task_instances(state=State.task_states, session=session)
            assert any("FROM task_instance" in statement for statement in reads)
        assert all("get_task_instances" not in run.__dict__ for run in runs)
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)


def _examine_runs_that_end(runner, session, prefix: str) -> tuple[dict[str, bool], int]:
    """Three due DAGs with more running runs, examined as one batch in which most runs end:
    (each DAG's ``exceeds_max_non_backfill`` afterwards, the active-run count queries sent)."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import event, select, update

    ids = [f"{prefix}_{i}" for i in range(3)]
    _bulk_created(runner, session, ids)
    with prohibit_commit(session) as guard:
        runner._start_queued_dagruns(session)
        guard.commit()
    # In examining order, after the scheduled runs: an operator-triggered run that ends (no count
    # follows its end), a manual one that ends (a count follows), and manual ones that go on.
    extra = [
        (ids[1], DagRunType.OPERATOR_TRIGGERED, "ends"),
        (ids[1], DagRunType.MANUAL, "ends"),
        (ids[1], DagRunType.MANUAL, "runs"),
        (ids[0], DagRunType.MANUAL, "runs"),
    ]
    for n, (dag_id, run_type, _) in enumerate(extra):
        runner.dag_cache.get_latest(dag_id, session).create_dagrun(
            run_id=f"extra_{n}",
            run_after=START,
            run_type=run_type,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
    for dag_id, limit in zip(ids, (1, 2, 1), strict=True):
        session.get(DagModel, dag_id).max_active_runs = limit
    going_on = [f"extra_{n}" for n, (_, _, fate) in enumerate(extra) if fate == "runs"]
    session.execute(
        update(TaskInstance)
        .where(TaskInstance.dag_id.in_(ids), TaskInstance.run_id.not_in(going_on))
        .values(state="success", start_date=START, end_date=START)
    )
    session.commit()

    counts: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        if "count(" in statement and "dag_run.run_type" in statement:
            counts.append(statement)

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        with prohibit_commit(session) as guard:
            batch = list(session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids)).order_by(DagRun.id)))
            assert len(batch) == 7
            runner._examine_batch(guard, batch, session)
            guard.commit()
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)
    states = session.execute(select(DagRun.run_id, DagRun.state).where(DagRun.dag_id.in_(ids))).all()
    assert sorted(run_id for run_id, state in states if state == "running") == going_on
    models = session.scalars(select(DagModel).where(DagModel.dag_id.in_(ids)))
    return {m.dag_id.removeprefix(prefix): m.exceeds_max_non_backfill for m in models}, len(counts)


def test_runs_ending_in_one_batch_count_their_dags_active_runs_with_one_query(runner, session):
    """Stock counts a DAG's active runs with one query per run that ends, to set
    ``exceeds_max_non_backfill``. Ours counts once per examined batch and sets the same flags,
    also when a run of the DAG ended between two counts without a count of its own."""
    import functools

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    # Runs of EmptyOperator DAGs that must go on: no immediate re-examination, which would end them.
    runner._schedule_dag_run = functools.partial(SchedulerJobRunner._schedule_dag_run, runner)
    ours, our_counts = _examine_runs_that_end(runner, session, "bulk_active_ours")
    runner._set_exceeds_max_active_runs = functools.partial(
        SchedulerJobRunner._set_exceeds_max_active_runs, runner
    )
    stock, stock_counts = _examine_runs_that_end(runner, session, "bulk_active_stock")
    assert stock == {"_0": True, "_1": False, "_2": False}
    assert ours == stock
    assert (our_counts, stock_counts) == (1, 4)


def _empty_hops_dag(dag_id: str, *, one_task: bool):
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG(dag_id, schedule="@daily", start_date=START, catchup=False) as dag:
        if one_task:
            EmptyOperator(task_id="only")
        else:
            first, second = EmptyOperator(task_id="first"), EmptyOperator(task_id="second")
            work, end = BashOperator(task_id="work", bash_command="true"), EmptyOperator(task_id="end")
            first >> second >> work >> end
    return dag


def _states_after_examining(runner, session, prefix: str, times: int) -> list[dict[str, str | None]]:
    """Two running runs (a one-task EmptyOperator DAG; EmptyOperator, EmptyOperator, Bash,
    EmptyOperator in a chain), each examined ``times`` times (one batch each time): per
    examination, the run states and task-instance states."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    ids = {f"{prefix}_one": True, f"{prefix}_chain": False}
    models = [register_dag(session, _empty_hops_dag(dag_id, one_task=one)) for dag_id, one in ids.items()]
    for model in models:
        _reset_next_run(runner, session, model)
    with prohibit_commit(session) as guard:
        runner._create_timed_runs([session.get(DagModel, m.dag_id) for m in models], guard, session)
        guard.commit()
        runner._start_queued_dagruns(session)
        guard.commit()
    seen = []
    for _ in range(times):
        with prohibit_commit(session) as guard:
            batch = list(
                session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids)).order_by(DagRun.dag_id))
            )
            runner._examine_batch(guard, batch, session)
        session.expire_all()
        states = {
            run.dag_id.removeprefix(prefix): run.state
            for run in session.scalars(select(DagRun).where(DagRun.dag_id.in_(ids)))
        }
        tis = session.execute(
            select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id.in_(ids)
            )
        )
        states |= {f"{dag_id.removeprefix(prefix)}.{task_id}": state for dag_id, task_id, state in tis}
        seen.append(states)
    return seen


def test_emptyoperator_hops_are_decided_in_the_same_examination(runner, session):
    """Stock sets an EmptyOperator's task instance to success in one examination and moves on
    from it in the next (a loop later); ours examines the run again at once: the same states,
    in fewer examinations."""
    import functools

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    ours = _states_after_examining(runner, session, "hops_ours", 1)
    runner._schedule_dag_run = functools.partial(SchedulerJobRunner._schedule_dag_run, runner)
    stock = _states_after_examining(runner, session, "hops_stock", 3)
    assert ours[0] == {
        "_one": "success", "_one.only": "success",
        "_chain": "running", "_chain.first": "success", "_chain.second": "success",
        "_chain.work": "scheduled", "_chain.end": None,
    }  # fmt: skip
    assert stock[0]["_one"] == "running" and stock[0]["_chain.second"] is None
    assert stock[-1] == ours[0]  # three stock examinations to get there
    assert stock[-2] != ours[0]
