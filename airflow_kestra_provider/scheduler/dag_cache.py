"""Deserialized DAGs keyed by (dag_id, dag version id, dag hash), shared by the whole scheduler.

Airflow's ``CachedDBDagBag`` already keys deserialized DAGs by ``dag_version_id`` (and checks the
``dag_hash`` because a version can be rewritten in place), but the stock scheduler bypasses it
whenever it asks for the *latest* DAG of a dag_id: ``_get_current_dag`` and
``DagModel.dags_needing_dagruns`` load and deserialize ``serialized_dag`` rows on every call.

:class:`KestraDagCache` adds lookups by dag_id that cost ONE query for any number of DAGs (the
latest version id and hash of each, no blob), deserialize only what is not cached yet (one more
query for all misses), and store the result in the same version-keyed LRU the run-scheduling
path uses. A new DAG version has a new id (or a new hash), so it is a miss and gets loaded;
nothing else needs invalidating.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

from airflow.models.dag_version import DagVersion
from airflow.models.dagbag import CachedDBDagBag
from airflow.models.serialized_dag import SerializedDagModel
from sqlalchemy import func, select

if TYPE_CHECKING:
    from airflow.serialization.definitions.dag import SerializedDAG
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


class LatestVersion(NamedTuple):
    dag_version_id: UUID
    dag_hash: str


class KestraDagCache(CachedDBDagBag):
    """Version-keyed, size-bounded DAG cache with batched latest-version lookups by dag_id."""

    def __init__(self, size: int) -> None:
        super().__init__(
            load_op_links=False, cache_size=size, cache_ttl=0, stats_prefix="kestra_scheduler.dag_cache"
        )
        self.hits = 0
        self.misses = 0

    def _on_cache_hit(self) -> None:
        self.hits += 1
        super()._on_cache_hit()

    def _on_cache_miss(self) -> None:
        self.misses += 1
        super()._on_cache_miss()

    @staticmethod
    def latest_versions(dag_ids: Iterable[str], session: Session) -> dict[str, LatestVersion]:
        """Latest serialized version id and hash of each dag_id, in one query (no DAG data)."""
        ids = list(dict.fromkeys(dag_ids))
        if not ids:
            return {}
        newest = (
            select(DagVersion.dag_id, func.max(DagVersion.version_number).label("number"))
            .join(SerializedDagModel, SerializedDagModel.dag_version_id == DagVersion.id)
            .where(DagVersion.dag_id.in_(ids))
            .group_by(DagVersion.dag_id)
            .subquery()
        )
        rows = session.execute(
            select(DagVersion.dag_id, SerializedDagModel.dag_version_id, SerializedDagModel.dag_hash)
            .join(SerializedDagModel, SerializedDagModel.dag_version_id == DagVersion.id)
            .join(
                newest,
                (DagVersion.dag_id == newest.c.dag_id) & (DagVersion.version_number == newest.c.number),
            )
        )
        return {dag_id: LatestVersion(version_id, dag_hash) for dag_id, version_id, dag_hash in rows}

    def get_latest_many(self, dag_ids: Iterable[str], session: Session) -> dict[str, SerializedDAG]:
        """The latest DAG of each dag_id that has one; deserializes only cache misses."""
        return {dag_id: dag for dag_id, (dag, _) in self.get_latest_with_versions(dag_ids, session).items()}

    def get_latest_with_versions(
        self, dag_ids: Iterable[str], session: Session
    ) -> dict[str, tuple[SerializedDAG, UUID]]:
        """Like :meth:`get_latest_many`, with the ``dag_version`` id each DAG was loaded from."""
        versions = self.latest_versions(dag_ids, session)
        found: dict[str, tuple[SerializedDAG, UUID]] = {}
        missing: list[UUID] = []
        now = time.monotonic()
        with self._lock:
            for dag_id, latest in versions.items():
                entry = self._dags.get(latest.dag_version_id)
                if entry is not None and entry.dag_hash == latest.dag_hash:
                    # Just confirmed against the database: restart its revalidation window.
                    self._dags[latest.dag_version_id] = entry._replace(last_validated=now)
                    found[dag_id] = (entry.dag, latest.dag_version_id)
                    self._on_cache_hit()
                else:
                    missing.append(latest.dag_version_id)
        if missing:
            for row in session.scalars(
                select(SerializedDagModel).where(SerializedDagModel.dag_version_id.in_(missing))
            ):
                self._on_cache_miss()
                try:
                    dag = self._read_dag(row)
                except Exception:
                    log.exception("Failed to deserialize DAG '%s'", row.dag_id)
                    continue
                if dag is not None:
                    found[row.dag_id] = (dag, row.dag_version_id)
        return found

    def get_latest(self, dag_id: str, session: Session) -> SerializedDAG | None:
        return self.get_latest_many((dag_id,), session).get(dag_id)
