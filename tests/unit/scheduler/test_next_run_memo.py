"""The next-run memo gives each DAG the answer its own ``next_dagrun_info`` gives, computing it once
per distinct (timetable, restriction, last run)."""

from __future__ import annotations

import datetime

import pytest

from airflow_kestra_provider.scheduler.next_run_memo import NextRunMemo, timetable_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


def _serialized(dag_id: str, schedule, start=START, catchup=False):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG(dag_id, schedule=schedule, start_date=start, catchup=catchup) as dag:
        EmptyOperator(task_id="t")
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _last_run(dag):
    """The info of the run the bulk path just created for ``dag``."""
    return dag.next_dagrun_info(last_automated_run_info=None)


def test_same_schedule_is_computed_once_and_answers_as_the_dag_does():
    memo = NextRunMemo()
    dags = [_serialized(f"d{i}", "@daily") for i in range(3)]
    last = _last_run(dags[0])
    answers = [memo.view(dag).next_dagrun_info(last_automated_run_info=last) for dag in dags]
    assert (memo.misses, memo.hits) == (1, 2)
    assert answers == [dag.next_dagrun_info(last_automated_run_info=last) for dag in dags]
    assert answers[0] is not None and answers[0].run_after > last.run_after


@pytest.mark.parametrize(
    "other",
    [
        {"schedule": "@hourly"},
        {"schedule": "@daily", "start": START + datetime.timedelta(days=1)},
        {"schedule": "@daily", "catchup": True},
    ],
    ids=["schedule", "start_date", "catchup"],
)
def test_a_different_timetable_or_restriction_is_asked_again(other):
    memo = NextRunMemo()
    daily, different = _serialized("a", "@daily"), _serialized("b", **other)
    last = _last_run(daily)
    memo.view(daily).next_dagrun_info(last_automated_run_info=last)
    answer = memo.view(different).next_dagrun_info(last_automated_run_info=last)
    assert (memo.misses, memo.hits) == (2, 0)
    assert answer == different.next_dagrun_info(last_automated_run_info=last)


def test_a_different_last_run_is_asked_again():
    memo = NextRunMemo()
    one, two = _serialized("a", "@daily"), _serialized("b", "@daily")
    first = _last_run(one)
    second = one.next_dagrun_info(last_automated_run_info=first)
    memo.view(one).next_dagrun_info(last_automated_run_info=first)
    assert memo.view(two).next_dagrun_info(last_automated_run_info=second) == two.next_dagrun_info(
        last_automated_run_info=second
    )
    assert (memo.misses, memo.hits) == (2, 0)


def test_custom_timetables_are_not_memoized():
    from airflow.timetables.base import Timetable

    class Custom(Timetable):  # defined outside airflow.timetables: its answers may depend on anything
        pass

    dag = _serialized("a", "@daily")
    dag.timetable = Custom()
    assert timetable_key(dag) is None
    assert NextRunMemo().view(dag) is dag


def test_calculate_dagrun_date_fields_through_the_view_sets_the_same_fields():
    from airflow.models.dag import DagModel

    dag = _serialized("a", "@daily")
    last = _last_run(dag)

    class Run:  # what run_info_from_dag_run reads from the run just created
        run_after = last.run_after
        data_interval_start, data_interval_end = last.data_interval
        partition_date = partition_key = None
        logical_date = last.logical_date

    fields = ("next_dagrun", "next_dagrun_create_after", "next_dagrun_data_interval")
    stock, memoized = DagModel(dag_id="a"), DagModel(dag_id="a")
    stock.calculate_dagrun_date_fields(dag=dag, reference_run=Run())
    memo = NextRunMemo()
    memoized.calculate_dagrun_date_fields(dag=memo.view(dag), reference_run=Run())
    assert [getattr(memoized, f) for f in fields] == [getattr(stock, f) for f in fields]
    assert memo.misses == 1
