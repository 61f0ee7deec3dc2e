"""KestraDagCache against a real (SQLite) metadata schema: hits, new versions, in-place rewrites."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _lazy(dag_id: str, *task_ids: str):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    with DAG(dag_id, schedule=None) as dag:
        for task_id in task_ids:
            EmptyOperator(task_id=task_id)
    return LazyDeserializedDAG.from_dag(dag)


def _write(session, dag_id: str, *task_ids: str) -> None:
    from airflow.models.serialized_dag import SerializedDagModel

    SerializedDagModel.write_dag(_lazy(dag_id, *task_ids), bundle_name="bundle", session=session)
    session.commit()


def _new_version(session, dag_id: str, number: int, *task_ids: str) -> None:
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel

    version = DagVersion(dag_id=dag_id, bundle_name="bundle", version_number=number)
    session.add(version)
    session.flush()
    row = SerializedDagModel(_lazy(dag_id, *task_ids))
    row.dag_version = version
    session.add(row)
    session.commit()


def test_second_lookup_is_a_hit_and_shared_with_version_lookups(session):
    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    _write(session, "one", "a")
    cache = KestraDagCache(10)
    first = cache.get_latest("one", session)
    assert first is not None and first.task_ids == ["a"]
    assert (cache.hits, cache.misses) == (0, 1)
    assert cache.get_latest("one", session) is first
    assert (cache.hits, cache.misses) == (1, 1)
    # run scheduling asks by version id: the same cached object, no new deserialization
    version_id = cache.latest_versions(["one"], session)["one"].dag_version_id
    assert cache.get_dag(version_id, session) is first
    assert cache.misses == 1


def test_new_version_is_loaded_and_old_version_stays_for_old_runs(session):
    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    _write(session, "two", "a")
    cache = KestraDagCache(10)
    old_version = cache.latest_versions(["two"], session)["two"].dag_version_id
    old = cache.get_latest("two", session)
    _new_version(session, "two", 2, "a", "b")
    new = cache.get_latest("two", session)
    assert new is not None and new.task_ids == ["a", "b"]
    assert cache.get_dag(old_version, session) is old
    assert cache.misses == 2


def test_version_rewritten_in_place_is_reloaded(session):
    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    _write(session, "three", "a")
    cache = KestraDagCache(10)
    assert cache.get_latest("three", session).task_ids == ["a"]
    _write(session, "three", "a", "c")  # no runs yet: Airflow rewrites the same version id
    assert cache.get_latest("three", session).task_ids == ["a", "c"]
    assert cache.misses == 2


def test_batch_lookup_one_query_for_many_and_size_bound(session):
    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    cache = KestraDagCache(2)
    found = cache.get_latest_many(["one", "two", "three", "missing"], session)
    assert sorted(found) == ["one", "three", "two"]
    assert len(cache._dags) == 2  # bounded by [kestra] dag_cache_size


def test_runs_of_a_batch_resolve_their_newest_versions_with_one_query(session):
    """Stock ``get_dag_for_run`` asks for a run's newest dag version with one query per run; the
    cache answers every run loaded in the session with one query, until the next batch."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType
    from sqlalchemy import event

    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    session.add_all([DagModel(dag_id=d, bundle_name="bundle") for d in ("four", "five")])
    session.commit()
    _write(session, "four", "a")
    _write(session, "five", "a")
    runs = [DagRun(dag_id=d, run_id=f"{d}_run", run_type=DagRunType.MANUAL) for d in ("four", "five")]
    session.add_all(runs)
    session.commit()
    for run in runs:  # this test session expires on commit; the scheduler's does not
        session.refresh(run)
    cache = KestraDagCache(10)
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(settings.engine, "before_cursor_execute", count)
    try:
        assert [cache.get_dag_for_run(run, session).task_ids for run in runs] == [["a"], ["a"]]
        version_queries = [s for s in statements if "max(dag_version.version_number)" in s]
        assert len(version_queries) == 1

        _new_version(session, "four", 2, "a", "b")
        assert cache.get_dag_for_run(runs[0], session).task_ids == ["a"]  # same batch, same answer
        cache.forget_run_versions()
        assert cache.get_dag_for_run(runs[0], session).task_ids == ["a", "b"]  # next batch: new version
    finally:
        event.remove(settings.engine, "before_cursor_execute", count)


def test_latest_versions_are_asked_again_only_after_a_dag_was_written(session):
    from airflow import settings
    from sqlalchemy import event

    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    cache = KestraDagCache(10)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    def version_queries() -> int:
        return sum("max(dag_version.version_number)" in s for s in statements)

    event.listen(settings.engine, "before_cursor_execute", record)
    try:
        first = cache.latest_versions_unless_unchanged(["four", "five"], session)
        assert version_queries() == 1
        assert cache.latest_versions_unless_unchanged(["four", "five"], session) == first
        assert version_queries() == 1  # nothing written: answered from memory
        _write(session, "five", "a", "z")  # rewritten in place (no runs): new hash, same version id
        rewritten = cache.latest_versions_unless_unchanged(["four", "five"], session)
        assert version_queries() == 2
        assert rewritten["five"].dag_hash != first["five"].dag_hash
        _new_version(session, "four", 3, "a", "b", "c")
        newer = cache.latest_versions_unless_unchanged(["four", "five"], session)
        assert version_queries() == 3
        assert newer["four"].dag_version_id != first["four"].dag_version_id
    finally:
        event.remove(settings.engine, "before_cursor_execute", record)
