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


# -- parity with DagModel.dags_needing_dagruns ------------------------------------------------------
def _parity_dag(session, dag_id: str, schedule, expression=None, **fields) -> None:
    """A DAG as the dag-processor writes it: its serialized version, and its ``dag`` row."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    with DAG(dag_id, schedule=schedule, start_date=start, catchup=False) as dag:
        EmptyOperator(task_id="t")
    values = {"is_paused": False, "is_stale": False, "max_active_runs": 16, "asset_expression": expression}
    values.update(fields)
    session.add(DagModel(dag_id=dag_id, bundle_name="bundle", **values))
    session.flush()
    SerializedDagModel.write_dag(LazyDeserializedDAG.from_dag(dag), bundle_name="bundle", session=session)


def test_due_and_ready_dags_are_the_ones_stock_would_pick(session, monkeypatch):
    """Cron DAGs due or not, paused, stale, with import errors or over their non-backfill limit;
    asset conditions met, half met and met at max_active_runs: our two queries pick the same DAGs,
    with the same asset-triggered dates, as ``DagModel.dags_needing_dagruns``."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.sdk import Asset
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache
    from airflow_kestra_provider.scheduler.due_dags import (
        AssetConditionMemo,
        lock_dags,
        lock_due_dags,
        ready_asset_triggered_dags,
    )

    now = datetime.datetime.now(datetime.timezone.utc)
    due, later = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    for dag_id, fields in {
        "par_due": {},
        "par_due_older": {"next_dagrun_create_after": due - datetime.timedelta(days=1)},
        "par_later": {"next_dagrun_create_after": later},
        "par_paused": {"is_paused": True},
        "par_stale": {"is_stale": True},
        "par_import_errors": {"has_import_errors": True},
        "par_over_limit": {"exceeds_max_non_backfill": True},
    }.items():
        _parity_dag(session, dag_id, "@daily", **{"next_dagrun_create_after": due, **fields})
    both = Asset("par_a") & Asset("par_b")
    either = Asset("par_a") | Asset("par_b")
    _parity_dag(session, "par_all_met", both, {"all": ["par_a", "par_b"]})
    _parity_dag(session, "par_half_met", both, {"all": ["par_a", "par_b"]})
    _parity_dag(session, "par_any_met", either, {"any": ["par_a", "par_b"]})
    _parity_dag(session, "par_full", Asset("par_a"), {"all": ["par_a"]}, max_active_runs=1)
    _parity_dag(session, "par_assets_paused", Asset("par_a"), {"all": ["par_a"]}, is_paused=True)
    session.add(
        DagRun(dag_id="par_full", run_id="busy", run_type=DagRunType.MANUAL, state=DagRunState.RUNNING)
    )
    session.commit()
    for asset, dag_id in [
        ("par_a", "par_all_met"),
        ("par_b", "par_all_met"),
        ("par_a", "par_half_met"),
        ("par_b", "par_any_met"),
        ("par_a", "par_full"),
        ("par_a", "par_assets_paused"),
    ]:
        _queue(session, asset, dag_id)

    monkeypatch.setattr(
        DagModel, "NUM_DAGS_PER_DAGRUN_QUERY", 1000
    )  # ours takes batches until its budget ends
    stock_query, stock_dates = DagModel.dags_needing_dagruns(session)
    stock = {dag.dag_id for dag in stock_query}
    session.rollback()
    ready = ready_asset_triggered_dags(session, KestraDagCache(10), AssetConditionMemo())
    ours = {d.dag_id for d in lock_dags(session, list(ready))} | {
        d.dag_id for d in lock_due_dags(session, 1000)
    }
    session.rollback()

    assert {"par_due", "par_due_older", "par_all_met", "par_any_met"} <= stock
    assert not {"par_later", "par_paused", "par_half_met", "par_full", "par_assets_paused"} & stock
    assert ours == stock
    assert {k: v for k, v in ready.items() if k in ours} == {
        k: v for k, v in stock_dates.items() if k in stock
    }
