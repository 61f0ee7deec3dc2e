"""Find the DAGs that need a dag run: ready asset-triggered DAGs and due timetable DAGs.

Same decisions as ``DagModel.dags_needing_dagruns``, with two differences:

* asset conditions are evaluated on DAGs from :class:`~.dag_cache.KestraDagCache` (one query for
  the latest versions of all DAGs with queued asset events, deserialization only on a miss),
  instead of deserializing every such DAG on every loop;
* due timetable DAGs are locked in batches of any size (oldest ``next_dagrun_create_after``
  first), so the caller can keep taking batches until its time budget is spent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from airflow.assets.evaluation import AssetEvaluator
from airflow.models.asset import AssetDagRunQueue
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
from airflow.utils.sqlalchemy import with_row_locks
from airflow.utils.state import DagRunState
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload
from sqlalchemy.sql import expression

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

log = logging.getLogger(__name__)


def ready_asset_triggered_dags(session: Session, cache: KestraDagCache) -> dict[str, datetime]:
    """dag_id -> newest queued asset event time, for DAGs whose asset condition is met and that
    are below ``max_active_runs``. Deletes queue rows of DAGs no longer asset-scheduled."""
    queued: dict[str, list[AssetDagRunQueue]] = defaultdict(list)
    for row in session.scalars(
        select(AssetDagRunQueue).options(
            joinedload(AssetDagRunQueue.dag_model), joinedload(AssetDagRunQueue.asset)
        )
    ):
        if row.dag_model.asset_expression is None:
            session.delete(row)  # the DAG stopped depending on assets: stale queue row
        else:
            queued[row.target_dag_id].append(row)
    if not queued:
        return {}

    dags = cache.get_latest_many(queued, session)
    evaluator = AssetEvaluator(session)
    ready: dict[str, datetime] = {}
    for dag_id, rows in queued.items():
        dag = dags.get(dag_id)
        if dag is None:
            log.info("Dag %s has queued asset events but no serialized DAG yet; skipping", dag_id)
            continue
        statuses = {SerializedAssetUniqueKey.from_asset(row.asset): True for row in rows}
        try:
            met = evaluator.run(dag.timetable.asset_condition, statuses)
        except Exception:
            log.exception("Dag %s asset condition failed to evaluate; assuming not ready", dag_id)
            met = False
        if met:
            ready[dag_id] = max(row.created_at for row in rows)
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
