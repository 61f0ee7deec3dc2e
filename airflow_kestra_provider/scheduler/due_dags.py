"""Find the DAGs that need a dag run: ready asset-triggered DAGs and due timetable DAGs.

Same decisions as ``DagModel.dags_needing_dagruns``, with two differences:

* asset conditions are evaluated on DAGs from :class:`~.dag_cache.KestraDagCache` (one query for
  the latest versions of all DAGs with queued asset events, deserialization only on a miss),
  instead of deserializing every such DAG on every loop, and an answer is kept by DAG version and
  set of queued assets (:class:`AssetConditionMemo`), so a loop in which nothing changed
  evaluates nothing; the queue is read as plain columns, not ORM objects;
* due timetable DAGs are locked in batches of any size (oldest ``next_dagrun_create_after``
  first), so the caller can keep taking batches until its time budget is spent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.assets.evaluation import AssetEvaluator
from airflow.models.asset import AssetDagRunQueue, AssetModel
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.serialization.definitions.assets import (
    SerializedAsset,
    SerializedAssetBase,
    SerializedAssetBooleanCondition,
    SerializedAssetUniqueKey,
)
from airflow.utils.sqlalchemy import with_row_locks
from airflow.utils.state import DagRunState
from sqlalchemy import Text, cast, delete, func, select, tuple_
from sqlalchemy.sql import expression

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

log = logging.getLogger(__name__)


MemoKey = tuple[str, Any, str, frozenset[int]]


class AssetConditionMemo:
    """Whether a DAG's asset condition was met, keyed by (DAG version, hash, queued asset ids).

    Only for conditions made of assets and ``&`` / ``|``: those depend on nothing but the
    condition (fixed by the version and hash) and the set of assets with queued events. An
    ``asset`` row's id stands for its (name, uri), which is unique and never rewritten, so the
    key holds ids and the condition's inputs are built only when it is evaluated. Conditions
    with asset aliases or references are looked up in the database, so they are evaluated
    every time. Bounded: cleared when it holds more than ``size`` entries."""

    def __init__(self, size: int = 100_000) -> None:
        self._met: dict[MemoKey, bool] = {}
        self._size = size
        self.hits = 0

    def get(self, key: MemoKey) -> bool | None:
        met = self._met.get(key)
        if met is not None:
            self.hits += 1
        return met

    def put(self, key: MemoKey, met: bool) -> None:
        if len(self._met) >= self._size:
            self._met.clear()
        self._met[key] = met


def _only_assets(condition: SerializedAssetBase) -> bool:
    if isinstance(condition, SerializedAsset):
        return True
    if isinstance(condition, SerializedAssetBooleanCondition):
        return all(_only_assets(inner) for inner in condition.objects)
    return False  # an alias or a reference: resolved in the database on every evaluation


def ready_asset_triggered_dags(
    session: Session, cache: KestraDagCache, memo: AssetConditionMemo | None = None
) -> dict[str, datetime]:
    """dag_id -> newest queued asset event time, for DAGs whose asset condition is met and that
    are below ``max_active_runs``. Deletes queue rows of DAGs no longer asset-scheduled.

    Reads the queue as plain columns (one query, no ORM objects), the latest version of each
    queued DAG (one query, skipped while no DAG was written), and evaluates a condition only when ``memo`` has no answer for the
    DAG's version and queued assets (deserializing the DAG only on a cache miss)."""
    no_expression = func.coalesce(cast(DagModel.asset_expression, Text), "null") == "null"
    queued: dict[str, set[int]] = defaultdict(set)  # dag_id -> ids of its queued assets
    asset_keys: dict[int, tuple[str, str]] = {}  # asset id -> (name, uri)
    newest_event: dict[str, datetime] = {}
    stale: list[tuple[int, str]] = []
    for dag_id, asset_id, created_at, name, uri, is_stale in session.execute(
        select(
            AssetDagRunQueue.target_dag_id,
            AssetDagRunQueue.asset_id,
            AssetDagRunQueue.created_at,
            AssetModel.name,
            AssetModel.uri,
            no_expression,
        )
        .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
        .join(DagModel, DagModel.dag_id == AssetDagRunQueue.target_dag_id)
    ):
        if is_stale:
            stale.append((asset_id, dag_id))  # the DAG stopped depending on assets
            continue
        queued[dag_id].add(asset_id)
        asset_keys[asset_id] = (name, uri)
        newest_event[dag_id] = max(created_at, newest_event.get(dag_id, created_at))
    if stale:
        session.execute(
            delete(AssetDagRunQueue).where(
                tuple_(AssetDagRunQueue.asset_id, AssetDagRunQueue.target_dag_id).in_(stale)
            ),
            execution_options={"synchronize_session": False},
        )
    if not queued:
        return {}

    versions = cache.latest_versions_unless_unchanged(queued, session)
    met: dict[str, bool] = {}
    keys = {
        dag_id: (dag_id, version.dag_version_id, version.dag_hash, frozenset(queued[dag_id]))
        for dag_id, version in versions.items()
    }
    if memo is not None:
        for dag_id, key in keys.items():
            answer = memo.get(key)
            if answer is not None:
                met[dag_id] = answer
    to_evaluate = {dag_id: version for dag_id, version in versions.items() if dag_id not in met}
    dags = cache.get_versions(to_evaluate, session) if to_evaluate else {}
    evaluator = AssetEvaluator(session)
    for dag_id in queued:
        if dag_id in met:
            continue
        if dag_id not in dags:
            log.info("Dag %s has queued asset events but no serialized DAG yet; skipping", dag_id)
            continue
        condition = dags[dag_id][0].timetable.asset_condition
        statuses = {
            SerializedAssetUniqueKey(name=asset_keys[asset_id][0], uri=asset_keys[asset_id][1]): True
            for asset_id in queued[dag_id]
        }
        try:
            met[dag_id] = evaluator.run(condition, statuses)
        except Exception:
            log.exception("Dag %s asset condition failed to evaluate; assuming not ready", dag_id)
            continue
        if memo is not None and _only_assets(condition):
            memo.put(keys[dag_id], met[dag_id])
    ready = {dag_id: newest_event[dag_id] for dag_id, is_met in met.items() if is_met}
    if ready:
        ready = _drop_at_max_active_runs(ready, session)
    return ready


def _drop_at_max_active_runs(ready: dict[str, datetime], session: Session) -> dict[str, datetime]:
    full = set(
        session.scalars(
            select(DagModel.dag_id)
            .join(DagRun.dag_model)
            .where(DagRun.state.in_((DagRunState.QUEUED, DagRunState.RUNNING)))
            .where(DagModel.dag_id.in_(ready))
            .group_by(DagModel.dag_id)
            .having(func.count() >= func.max(DagModel.max_active_runs))
        )
    )
    if full:
        log.info("Asset-triggered Dags at max_active_runs, deferring: %s", sorted(full))
    return {dag_id: when for dag_id, when in ready.items() if dag_id not in full}


def _schedulable():
    return (
        DagModel.is_paused == expression.false(),
        DagModel.is_stale == expression.false(),
        DagModel.has_import_errors == expression.false(),
        DagModel.exceeds_max_non_backfill == expression.false(),
    )


def lock_dags(session: Session, dag_ids: Collection[str]) -> list[DagModel]:
    """Lock the given DAGs' rows (skipping rows another scheduler holds)."""
    if not dag_ids:
        return []
    query = select(DagModel).where(*_schedulable(), DagModel.dag_id.in_(list(dag_ids)))
    return list(session.scalars(with_row_locks(query, of=DagModel, session=session, skip_locked=True)))


def lock_due_dags(session: Session, limit: int) -> list[DagModel]:
    """Lock up to ``limit`` DAGs whose next run is due, oldest due first (one query)."""
    query = (
        select(DagModel)
        .where(*_schedulable(), DagModel.next_dagrun_create_after <= func.now())
        .order_by(DagModel.next_dagrun_create_after)
        .limit(limit)
    )
    return list(session.scalars(with_row_locks(query, of=DagModel, session=session, skip_locked=True)))
