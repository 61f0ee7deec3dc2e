"""Asset-triggered readiness on a real (SQLite) metadata schema: same answers as Airflow, memoized."""

from __future__ import annotations

import datetime

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _asset_dag(session, dag_id: str, *, expression: bool = True) -> None:
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Asset
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    with DAG(dag_id, schedule=Asset("memo_a") & Asset("memo_b"), start_date=start) as dag:
        EmptyOperator(task_id="t")
    session.add(
        DagModel(
            dag_id=dag_id,
            bundle_name="bundle",
            is_paused=False,
            max_active_runs=16,
            asset_expression={"all": ["memo_a", "memo_b"]} if expression else None,
        )
    )
    session.flush()
    SerializedDagModel.write_dag(LazyDeserializedDAG.from_dag(dag), bundle_name="bundle", session=session)
    session.commit()


def _queue(session, asset_name: str, dag_id: str) -> None:
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from sqlalchemy import select

    asset = session.scalar(select(AssetModel).where(AssetModel.name == asset_name))
    if asset is None:
        asset = AssetModel(name=asset_name, uri=asset_name, group="asset")
        session.add(asset)
        session.flush()
    session.add(AssetDagRunQueue(asset_id=asset.id, target_dag_id=dag_id))
    session.commit()


def test_condition_is_evaluated_once_per_version_and_queued_assets(session):
    from airflow.models.asset import AssetDagRunQueue
    from sqlalchemy import func, select

    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache
    from airflow_kestra_provider.scheduler.due_dags import AssetConditionMemo, ready_asset_triggered_dags

    _asset_dag(session, "memo_consumer")
    _asset_dag(session, "memo_no_longer_asset", expression=False)
    cache = KestraDagCache(10)
    memo = AssetConditionMemo()

    _queue(session, "memo_a", "memo_consumer")
    _queue(session, "memo_a", "memo_no_longer_asset")
    assert ready_asset_triggered_dags(session, cache, memo) == {}  # only one of `a & b`
    session.commit()
    # the stale queue row of a DAG that no longer depends on assets is deleted, as stock does
    targets = set(session.scalars(select(AssetDagRunQueue.target_dag_id)))
    assert targets == {"memo_consumer"}
    misses = cache.misses
    assert ready_asset_triggered_dags(session, cache, memo) == {}
    assert memo.hits == 1 and cache.misses == misses  # nothing changed: nothing deserialized

    _queue(session, "memo_b", "memo_consumer")
    ready = ready_asset_triggered_dags(session, cache, memo)
    assert list(ready) == ["memo_consumer"]
    newest = session.scalar(
        select(func.max(AssetDagRunQueue.created_at)).where(AssetDagRunQueue.target_dag_id == "memo_consumer")
    )
    assert ready["memo_consumer"] == newest
