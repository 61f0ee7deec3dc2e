"""What the scheduler knows about the batch of dag runs it is creating, starting or examining.

The stock scheduler calls our overrides (``_get_current_dag``, ``_verify_integrity_if_dag_changed``)
with its own arguments, so the batch's answers cannot be passed to them as a parameter. They
live in one :class:`Batch` object instead, which the runner replaces at the start of every batch
(:meth:`KestraSchedulerJobRunner._begin_batch`): nothing of one batch is read in the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.serialization.definitions.dag import SerializedDAG


@dataclass
class Batch:
    # the batch's DAGs, newest versions, loaded with one cache lookup (run creation)
    dags: dict[str, SerializedDAG] = field(default_factory=dict)
    # (dag_id, run_id) of the batch's runs whose task instances are of their DAG's newest
    # version; None until the first run of the batch asks (then one query answers all of them)
    runs_on_newest: set[tuple[str, str]] | None = None
    # the running runs being examined, by DAG, and their DAGs' active (running or queued,
    # non-backfill) runs counted by one query when the first of them ends; the runs of the batch
    # that had ended by then (the count already left them out)
    examined: dict[str, list[DagRun]] = field(default_factory=dict)
    active_runs: dict[str, int] | None = None
    ended_before_count: frozenset[int] = frozenset()
