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

Runs resolve their DAG through ``get_dag_for_run``. A run without a bundle version (every run of
a local DAG folder) always uses the DAG's newest ``dag_version``, which the stock code looks up
with one query per run, each time a run is started or examined. Here the first such lookup of a
scheduling step asks, in one query, for the newest version of every DAG with a run loaded in the
session (the step's batch), and the step's other runs reuse the answer until
:meth:`KestraDagCache.forget_run_versions` (called by the scheduler before each batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from airflow.models.dag_version import DagVersion
from airflow.models.dagbag import CachedDBDagBag
from airflow.models.dagrun import DagRun
from airflow.models.serialized_dag import SerializedDagModel
from sqlalchemy import func, inspect, select

if TYPE_CHECKING:
    from airflow.serialization.definitions.dag import SerializedDAG
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def loaded_runs(session: Session) -> list[tuple[str, str]]:
    """(dag_id, run_id) of every dag run loaded in ``session``, read without loading anything."""
    pairs: list[tuple[str, str]] = []
    for obj in list(session.identity_map.values()):
        if isinstance(obj, DagRun):
            state: dict[str, Any] = inspect(obj).dict
            if "dag_id" in state and "run_id" in state:
                pairs.append((state["dag_id"], state["run_id"]))
    return pairs


def loaded_run_dag_ids(session: Session) -> set[str]:
    return {dag_id for dag_id, _ in loaded_runs(session)}


class NewestVersion(NamedTuple):
    dag_version_id: UUID
    dag_hash: str | None  # None: the version has no serialized DAG (yet)


def _newest_version_rows(dag_ids: Iterable[str], session: Session, *, serialized_only: bool) -> list[Any]:
    """(dag_id, dag_version id, serialized dag_hash) of each DAG's highest ``version_number``,
    one query: among all its versions (hash None when that version has no serialized DAG), or
    with ``serialized_only`` among the versions that have one."""
    ids = list(dict.fromkeys(dag_ids))
    if not ids:
        return []
    numbers = select(DagVersion.dag_id, func.max(DagVersion.version_number).label("number"))
    if serialized_only:
        numbers = numbers.join(SerializedDagModel, SerializedDagModel.dag_version_id == DagVersion.id)
    newest = numbers.where(DagVersion.dag_id.in_(ids)).group_by(DagVersion.dag_id).subquery()
    return list(
        session.execute(
            select(DagVersion.dag_id, DagVersion.id, SerializedDagModel.dag_hash)
            .join(
                newest,
                (DagVersion.dag_id == newest.c.dag_id) & (DagVersion.version_number == newest.c.number),
            )
            .join(
                SerializedDagModel,
                SerializedDagModel.dag_version_id == DagVersion.id,
                isouter=not serialized_only,
            )
        )
    )


def newest_versions(dag_ids: Iterable[str], session: Session) -> dict[str, NewestVersion]:
    """Each DAG's newest ``dag_version`` (highest ``version_number``: the row ``create_dagrun``
    and ``DagVersion.get_latest_version`` pick) with its serialized DAG's hash, one query."""
    rows = _newest_version_rows(dag_ids, session, serialized_only=False)
    return {dag_id: NewestVersion(version_id, dag_hash) for dag_id, version_id, dag_hash in rows}


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
        self._known_versions: dict[str, LatestVersion] = {}  # valid while the fingerprint holds
        self._versions_fingerprint: tuple[Any, ...] | None = None
        self._run_versions: dict[str, UUID | None] = {}  # dag_id -> newest version id, this batch

    def _on_cache_hit(self) -> None:
        self.hits += 1
        super()._on_cache_hit()

    def _on_cache_miss(self) -> None:
        self.misses += 1
        super()._on_cache_miss()

    @staticmethod
    def latest_versions(dag_ids: Iterable[str], session: Session) -> dict[str, LatestVersion]:
        """Latest serialized version id and hash of each dag_id, in one query (no DAG data)."""
        rows = _newest_version_rows(dag_ids, session, serialized_only=True)
        return {dag_id: LatestVersion(version_id, dag_hash) for dag_id, version_id, dag_hash in rows}

    def latest_versions_unless_unchanged(
        self, dag_ids: Iterable[str], session: Session
    ) -> dict[str, LatestVersion]:
        """:meth:`latest_versions`, answered from memory while ``serialized_dag`` is unchanged.

        One aggregate query (row count and newest ``last_updated``) tells whether any DAG was
        written, rewritten or deleted since the previous call; only then, or for dag_ids not
        asked before, the latest-version query runs. For callers that ask about the same DAGs on
        every loop (pending asset conditions)."""
        fingerprint = tuple(
            session.execute(select(func.count(), func.max(SerializedDagModel.last_updated))).one()
        )
        if fingerprint != self._versions_fingerprint:
            self._known_versions = {}
            self._versions_fingerprint = fingerprint
        ids = list(dict.fromkeys(dag_ids))
        unknown = [dag_id for dag_id in ids if dag_id not in self._known_versions]
        if unknown:
            self._known_versions.update(self.latest_versions(unknown, session))
        return {dag_id: self._known_versions[dag_id] for dag_id in ids if dag_id in self._known_versions}

    def get_latest_many(self, dag_ids: Iterable[str], session: Session) -> dict[str, SerializedDAG]:
        """The latest DAG of each dag_id that has one; deserializes only cache misses."""
        return {dag_id: dag for dag_id, (dag, _) in self.get_latest_with_versions(dag_ids, session).items()}

    def get_latest_with_versions(
        self, dag_ids: Iterable[str], session: Session
    ) -> dict[str, tuple[SerializedDAG, UUID]]:
        """Like :meth:`get_latest_many`, with the ``dag_version`` id each DAG was loaded from."""
        return self.get_versions(self.latest_versions(dag_ids, session), session)

    def get_versions(
        self, versions: dict[str, LatestVersion], session: Session
    ) -> dict[str, tuple[SerializedDAG, UUID]]:
        """The DAG of each given latest version; deserializes only cache misses (one query)."""
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

    def forget_run_versions(self) -> None:
        """Drop the newest-version answers of the previous batch (see the module docstring)."""
        self._run_versions = {}

    def newest_version_id(self, dag_id: str, session: Session) -> UUID | None:
        """The DAG's newest ``dag_version`` id (as ``DagVersion.get_latest_version``); the first
        call of a batch answers every DAG with a run loaded in ``session`` in one query."""
        if dag_id not in self._run_versions:
            wanted = (loaded_run_dag_ids(session) | {dag_id}) - self._run_versions.keys()
            newest = newest_versions(wanted, session)
            self._revalidate(newest.values())
            self._run_versions.update(
                {
                    wanted_id: newest[wanted_id].dag_version_id if wanted_id in newest else None
                    for wanted_id in wanted
                }
            )
        return self._run_versions[dag_id]

    def _version_for_run(self, dag_run: DagRun, session: Session) -> UUID | None:
        """Same answer as the stock ``_version_from_dag_run``, one query per batch."""
        if dag_run.bundle_version and dag_run.created_dag_version_id:
            return dag_run.created_dag_version_id
        return self.newest_version_id(dag_run.dag_id, session) or dag_run.created_dag_version_id

    def _revalidate(self, versions: Iterable[NewestVersion]) -> None:
        """The hash check ``_get_dag`` makes per version once its entry is older than
        ``[core] min_serialized_dag_update_interval``, for a whole batch from one query's answer:
        a matching entry starts a new window, a stale one is dropped (and reloaded on use)."""
        now = time.monotonic()
        with self._lock:
            for version in versions:
                entry = self._dags.get(version.dag_version_id)
                if entry is None or version.dag_hash is None:
                    continue
                if entry.dag_hash == version.dag_hash:
                    self._dags[version.dag_version_id] = entry._replace(last_validated=now)
                else:
                    self._dags.pop(version.dag_version_id, None)

    def get_dag_for_run(self, dag_run: DagRun, session: Session) -> SerializedDAG | None:
        if version_id := self._version_for_run(dag_run, session):
            return self._get_dag(version_id=version_id, session=session)
        return None

    def get_serialized_dag_model_for_run(
        self, dag_run: DagRun, *, session: Session
    ) -> SerializedDagModel | None:
        if version_id := self._version_for_run(dag_run, session):
            return self.get_serialized_dag_model(version_id=version_id, session=session)
        return None

    def get_latest(self, dag_id: str, session: Session) -> SerializedDAG | None:
        return self.get_latest_many((dag_id,), session).get(dag_id)
