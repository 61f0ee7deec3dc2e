"""Create the scheduled dag runs of many due DAGs with one INSERT for the runs and one for their TIs.

The stock ``SchedulerJobRunner._create_dag_runs`` calls ``SerializedDAG.create_dagrun`` once per
DAG, and each call runs about six statements of its own: the DAG's ``bundle_version``, its latest
``dag_version``, ``max(log_template.id)``, the run INSERT (with a flush), the run's existing task
instances (always none for a new run) and the TI INSERT (with another flush). At a few ms per
round trip that is where most of the time of a due DAG goes.

:func:`create_runs` builds the same rows for a whole batch and writes them together:

* each run is built by Airflow's own ``DagRun`` constructor with the arguments ``create_dagrun``
  passes (run id and data interval from the DAG's timetable, state QUEUED, ``triggered_by``
  TIMETABLE, ``creating_job_id``, ``bundle_version`` from the locked ``dag`` row, the latest
  ``dag_version`` id, ``max(log_template.id)``), so ``queued_at``, ``conf``, ``clear_number`` and the
  trace ``context_carrier`` come from the same code; one INSERT writes all of them (the new
  runs are not added to the session);
* each task instance row is Airflow's own ``TaskInstance.insert_mapping`` for that run (pool, queue,
  priority weight, ``dag_version_id``, context carrier, ...), for the tasks ``verify_integrity``
  would create (the task ``start_date`` / ``end_date`` filter); one ``bulk_insert_mappings`` writes
  them all;
* the same ``task_instance_created`` counter per run and task type, and the stock ``creating dag
  run`` line per run at DEBUG (rendering it per run cost a tenth of the bulk path) plus one INFO
  line per batch; then each ``dag`` row's next-run fields and ``exceeds_max_non_backfill``
  are set by the stock ``calculate_dagrun_date_fields`` (the ORM flushes them together).

Everything this module does not reproduce exactly is left to the stock path: the caller gets those
DAGs back from :func:`split` and passes them to ``_create_dag_runs``. That is: partitioned
timetables, DAGs with deadline alerts (they insert ``deadline`` rows per run), DAGs with mapped
tasks or mapped task groups (their TI count may need the database), a DAG whose cached version is
not its latest ``dag_version``, DAGs that hit any of the stock checks (max active runs reached,
missing next-run fields, scheduled runs not allowed, a run for that date already existing), and
every DAG when a ``task_instance_mutation_hook`` is configured. The batch is written inside a
SAVEPOINT; if writing fails (for instance a unique violation), the savepoint is rolled back and
the whole batch goes to the stock path, which then behaves exactly as without this module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.tasklog import LogTemplate
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType
from sqlalchemy import func, insert, inspect, select, tuple_

from airflow_kestra_provider.scheduler.dag_cache import newest_versions

if TYPE_CHECKING:
    from airflow.models.dag import DagModel
    from airflow.serialization.definitions.dag import SerializedDAG
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
# The logger create_dagrun writes its "creating dag run" line to; the bulk path writes it at DEBUG.
_create_log = structlog.get_logger("airflow.serialization.definitions.dag")


@dataclass
class Split:
    """A batch of due DAGs: those :func:`create_runs` writes itself, and those for the stock path."""

    bulk: list[tuple[DagModel, SerializedDAG, UUID]] = field(default_factory=list)
    stock: list[DagModel] = field(default_factory=list)


def mutation_hook_is_noop() -> bool:
    from airflow.settings import task_instance_mutation_hook

    return bool(getattr(task_instance_mutation_hook, "is_noop", False))


def dag_is_plain(dag: SerializedDAG) -> bool:
    """True when every TI of a new run of ``dag`` is known without the database and the run
    creates nothing besides its task instances (no deadline alerts, no partitions)."""
    if dag.deadline or dag.timetable.partitioned or dag.timetable.partitioned_at_runtime:
        return False
    for task in dag.task_dict.values():
        if getattr(task, "is_mapped", False) or task.get_closest_mapped_task_group() is not None:
            return False
    return True


def split(
    dag_models: Iterable[DagModel],
    dags: dict[str, tuple[SerializedDAG, UUID]],
    session: Session,
) -> Split:
    """Decide per DAG: bulk (the plain case) or the stock ``_create_dag_runs``."""
    models = list(dag_models)
    result = Split()
    if not models:
        return result
    if not mutation_hook_is_noop():
        result.stock = models
        return result
    latest = {
        dag_id: newest.dag_version_id
        for dag_id, newest in newest_versions((m.dag_id for m in models), session).items()
    }
    candidates: list[tuple[DagModel, SerializedDAG, UUID]] = []
    for model in models:
        dag, version_id = dags.get(model.dag_id, (None, None))
        if (
            dag is None
            or version_id is None
            or model.exceeds_max_non_backfill
            or model.timetable_partitioned is not False
            or model.next_dagrun is None
            or model.next_dagrun_create_after is None
            or (model.allowed_run_types is not None and DagRunType.SCHEDULED not in model.allowed_run_types)
            or latest.get(model.dag_id) is None
            or latest.get(model.dag_id) != version_id
            or not dag_is_plain(dag)
        ):
            result.stock.append(model)
        else:
            candidates.append((model, dag, version_id))
    if candidates:
        existing = {
            (dag_id, logical_date)
            for dag_id, logical_date in session.execute(
                select(DagRun.dag_id, DagRun.logical_date).where(
                    tuple_(DagRun.dag_id, DagRun.logical_date).in_(
                        [(m.dag_id, m.next_dagrun) for m, _, _ in candidates]
                    )
                )
            )
        }
        for model, dag, version_id in candidates:
            if (model.dag_id, model.next_dagrun) in existing:
                result.stock.append(model)  # the stock path logs it and moves next_dagrun on
            else:
                result.bulk.append((model, dag, version_id))
    return result


_RUN_ID_REGEX: re.Pattern[str] | None = None


def _check_run_id(run_id: str) -> None:
    """The run-id checks ``create_dagrun`` makes (the ``DagRun`` validator repeats them)."""
    from airflow.configuration import conf
    from airflow.models.dagrun import RUN_ID_REGEX

    if ".." in run_id and not conf.getboolean("core", "allow_double_dot_in_ids", fallback=False):
        raise ValueError(f"The run_id '{run_id}' must not contain '..' to prevent path traversal")
    if not re.match(RUN_ID_REGEX, run_id):
        pattern = conf.get("scheduler", "allowed_run_id_pattern").strip()
        if not pattern or not re.match(pattern, run_id):
            raise ValueError(f"The run_id provided '{run_id}' does not match regex pattern '{pattern}'")


def build_run(
    model: DagModel,
    dag: SerializedDAG,
    *,
    dag_version_id: UUID,
    log_template_id: int,
    creating_job_id: int | None,
) -> DagRun:
    """The ``DagRun`` that ``create_dagrun`` would add for ``model``'s next scheduled run."""
    from airflow._shared.timezones.timezone import coerce_datetime

    info = dag.timetable.next_run_info_from_dag_model(dag_model=model)
    if info is None:
        raise ValueError(f"timetable of {model.dag_id} returned no next run")
    run_id = dag.timetable.generate_run_id(
        run_type=DagRunType.SCHEDULED,
        run_after=info.run_after,
        data_interval=info.data_interval,
        partition_key=info.partition_key,
    )
    _create_log.debug(
        "creating dag run",
        run_after=info.run_after,
        run_id=run_id,
        logical_date=info.logical_date,
        partition_key=info.partition_key,
    )
    _check_run_id(run_id)
    dag.params.deep_merge(None).validate()
    run = DagRun(
        dag_id=dag.dag_id,
        run_id=run_id,
        logical_date=coerce_datetime(info.logical_date),
        start_date=None,
        run_after=coerce_datetime(info.run_after),
        conf=None,
        state=DagRunState.QUEUED,
        run_type=DagRunType.SCHEDULED,
        creating_job_id=creating_job_id,
        data_interval=info.data_interval,
        triggered_by=DagRunTriggeredByType.TIMETABLE,
        triggering_user_name=None,
        backfill_id=None,
        bundle_version=None if dag.disable_bundle_versioning else model.bundle_version,
        partition_key=info.partition_key,
        partition_date=info.partition_date,
        note=None,
    )
    run.log_template_id = log_template_id
    run.created_dag_version_id = dag_version_id
    run.consumed_asset_events = []
    return run


def ti_rows(
    run: DagRun, dag: SerializedDAG, dag_version_id: UUID
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The task-instance rows ``verify_integrity`` inserts for a new run of a plain DAG, and the
    count per task type it reports (one per task, as the stock counter does)."""
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    logical_date = run.logical_date
    for task in dag.task_dict.values():
        if logical_date is not None and (
            (task.start_date is not None and task.start_date > logical_date)
            or (task.end_date is not None and logical_date > task.end_date)
        ):
            continue
        counts[task.task_type] = counts.get(task.task_type, 0) + 1
        rows.append(
            TaskInstance.insert_mapping(
                run.run_id, task, map_index=-1, dag_version_id=dag_version_id, dag_run=run
            )
        )
    return rows, counts


def run_row(run: DagRun) -> dict[str, Any]:
    """The columns set on a new, unflushed ``run``, keyed by column name for a Core INSERT."""
    values: dict[str, Any] = inspect(run).dict
    return {
        prop.columns[0].key: values[prop.key] for prop in DagRun.__mapper__.column_attrs if prop.key in values
    }


def insert_runs(runs: list[DagRun], session: Session) -> None:
    """Core INSERTs of ``runs``, one per distinct set of columns (normally one); column defaults
    fill the columns the constructor left unset, as at flush. Not an ORM bulk INSERT: that
    evaluates ``DagRun``'s hybrid properties, one of which opens and commits a session."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for run in runs:
        row = run_row(run)
        groups.setdefault(frozenset(row), []).append(row)
    for rows in groups.values():
        session.execute(insert(DagRun.__table__), rows)


def create_runs(
    plan: list[tuple[DagModel, SerializedDAG, UUID]],
    *,
    creating_job_id: int | None,
    session: Session,
) -> list[tuple[DagModel, SerializedDAG, DagRun]]:
    """Insert the next scheduled run (and its TIs) of every DAG in ``plan`` in two statements.

    A DAG whose run cannot be built (bad params, bad run id, timetable error) is logged like the
    stock path does and skipped. Raises if writing fails; the caller wraps this in a savepoint.
    """
    from airflow.observability import stats

    if not plan:
        return []
    max_template = session.scalar(select(func.max(LogTemplate.__table__.c.id)))
    log_template_id = int(max_template) if max_template is not None else 0
    built: list[tuple[DagModel, SerializedDAG, DagRun, UUID]] = []
    for model, dag, version_id in plan:
        try:
            run = build_run(
                model,
                dag,
                dag_version_id=version_id,
                log_template_id=log_template_id,
                creating_job_id=creating_job_id,
            )
        except Exception:
            log.exception("Failed creating DagRun dag_id=%s", model.dag_id)
            continue
        built.append((model, dag, run, version_id))
    # The runs stay out of the session: unit-of-work bookkeeping for 200 new objects cost more
    # than the INSERT itself.
    insert_runs([run for _, _, run, _ in built], session)
    all_rows: list[dict[str, Any]] = []
    counters: list[tuple[DagRun, dict[str, int]]] = []
    for _, dag, run, version_id in built:
        run.dag = dag
        rows, counts = ti_rows(run, dag, version_id)
        all_rows.extend(rows)
        counters.append((run, counts))
    session.bulk_insert_mappings(TaskInstance.__mapper__, all_rows)
    session.flush()
    for run, counts in counters:
        for task_type, count in counts.items():
            stats.incr("task_instance_created", count, tags={**run.stats_tags, "task_type": task_type})
    if built:
        log.info(
            "Created %d scheduled dag runs with %d task instances in bulk (%s ... %s)",
            len(built),
            len(all_rows),
            built[0][2].dag_id,
            built[-1][2].dag_id,
        )
    return [(model, dag, run) for model, dag, run, _ in built]
