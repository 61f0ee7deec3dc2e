"""Every place where this provider depends on Airflow beyond its public API, as data.

Each :class:`Seam` names one Airflow object by its qualified name, says how we touch it (its
``kind``), which of our files do, and what the stock code does and why ours differs. For
callables it records the parameter names we rely on; for stock code whose body matters to us it
records a fingerprint of that body (sha256 of ``inspect.getsource``, dedented, trailing
whitespace stripped). ``tests/unit/test_airflow_contract.py`` checks all of it against the
installed Airflow, so an upgrade that changes any of these names, signatures or bodies fails
with a port checklist instead of silently changing what the scheduler, executor or workers do.

Kinds:

* ``override``: a subclass of ours defines the same name (usually calling the stock one);
* ``patch``: we assign to an Airflow class, module or instance at run time;
* ``call``: we import, call or read it; only its existence and parameters matter;
* ``reimplemented``: our code does what this stock code does, in its place (a copy, a batched
  equivalent); a change in the stock body must be ported to ours;
* ``relied-on``: we depend on what the stock code does inside (what it reads, in which order,
  which attribute it looks up when), without replacing it.

Every seam on an Airflow function or class carries a fingerprint, except ``call`` seams (their
contract is the signature). SQL text naming Airflow's tables is listed in :data:`SQL_COLUMNS`
and :data:`SQL_STATES`.

After porting a change, print the current fingerprints with::

    python -m airflow_kestra_provider.airflow_seams --fingerprints

and paste the changed ``fingerprint=...`` line into its record below. ``--check`` runs the same
checks as the contract test and prints what fails.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("override", "patch", "call", "reimplemented", "relied-on")
REGISTRY = "airflow_kestra_provider/airflow_seams.py"
CLI = "python -m airflow_kestra_provider.airflow_seams --fingerprints"

# Our files, relative to the repository root.
RUNNER = "airflow_kestra_provider/scheduler/runner.py"
BULK_RUNS = "airflow_kestra_provider/scheduler/bulk_runs.py"
DUE_DAGS = "airflow_kestra_provider/scheduler/due_dags.py"
QUEUED_RUNS = "airflow_kestra_provider/scheduler/queued_runs.py"
EXAMINED_TIS = "airflow_kestra_provider/scheduler/examined_tis.py"
SHORT_CIRCUITED = "airflow_kestra_provider/scheduler/short_circuited.py"
RUNNING_RUNS = "airflow_kestra_provider/scheduler/running_runs.py"
DAG_CACHE = "airflow_kestra_provider/scheduler/dag_cache.py"
CRON = "airflow_kestra_provider/scheduler/cron_descriptions.py"
NEXT_RUN_MEMO = "airflow_kestra_provider/scheduler/next_run_memo.py"
WORK = "airflow_kestra_provider/scheduler/work.py"
NOTIFY = "airflow_kestra_provider/scheduler/notify.py"
SCHEDULER_CLI = "airflow_kestra_provider/cli/scheduler_command.py"
CLI_DEFINITION = "airflow_kestra_provider/cli/definition.py"
EXECUTOR = "airflow_kestra_provider/executors/kestra_executor.py"
CLAIMS = "airflow_kestra_provider/queue/claims.py"
SUPERVISOR_TUNING = "airflow_kestra_provider/worker/supervisor_tuning.py"
RUNNER_POOL = "airflow_kestra_provider/worker/runner_pool.py"
API_CLIENT = "airflow_kestra_provider/worker/api_client.py"
DB_MANAGER = "airflow_kestra_provider/models/db.py"
PLUGIN = "airflow_kestra_provider/plugins/kestra_plugin.py"
STATUS_APP = "airflow_kestra_provider/plugins/status_app.py"
SCALE_CLONE = "airflow_kestra_provider/bench/scale_clone.py"
SCALE_LOADER = "airflow_kestra_provider/bench/scale_loader.py"
SCALE = "airflow_kestra_provider/bench/scale.py"
COLLECT = "airflow_kestra_provider/bench/collect.py"
METRICS = "airflow_kestra_provider/metrics.py"
TRIGGERER_JOB = "airflow_kestra_provider/triggerer/job_runner.py"
TRIGGERER_SUPERVISOR = "airflow_kestra_provider/triggerer/supervisor.py"
TRIGGERER_ASYNC = "airflow_kestra_provider/triggerer/async_runner.py"
TRIGGERER_EVENTS = "airflow_kestra_provider/triggerer/events.py"
TRIGGERER_CLI = "airflow_kestra_provider/cli/triggerer_command.py"


@dataclass(frozen=True)
class Seam:
    """One Airflow object we touch beyond its public API."""

    name: str  # qualified name: module path, then attributes
    kind: str  # one of KINDS
    ours: tuple[str, ...]  # our files that touch it
    note: str  # what stock does, and why (and how) ours differs
    params: tuple[str, ...] | None = None  # parameter names of a callable, as inspect.signature gives them
    fingerprint: str | None = None  # sha256 of the stock source (see source_fingerprint)
    # not a class attribute: declared by an annotation, an attrs field or an assignment to self.<name>
    declared: bool = False
    # False for a type we only name (a lookup key, a base of a check) and never construct
    check_signature: bool = True


SJR = "airflow.jobs.scheduler_job_runner.SchedulerJobRunner"

SEAMS: tuple[Seam, ...] = (
    # -- the scheduler job runner (scheduler/runner.py subclasses it) ---------------------------
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner.__init__",
        "relied-on",
        (RUNNER,),
        "Stock __init__ assigns _scheduler_idle_sleep_time (our property ignores it) and builds a CachedDBDagBag as scheduler_dag_bag, which we replace by KestraDagCache right after.",
        params=("self", "job", "num_runs", "only_idle", "scheduler_idle_sleep_time", "log", "executors"),
        fingerprint="3a22464032ed3ac54168d0aad4aa023683b90b199f10e5ea836f09783b93ff7c",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._run_scheduler_loop",
        "override",
        (RUNNER,),
        "We wrap the stock loop (LISTEN connection, gc threshold); it must still call _do_scheduling first and _process_executor_events each loop, judge idleness from their counts and read _scheduler_idle_sleep_time only right before its idle sleep (our loop metrics time a loop from one _do_scheduling to the next or to that read).",
        params=("self",),
        fingerprint="95c437964f33e0c2df1d1d3d1d4a1ea3a07388467b0eebb7d9e3f39365f7f6dd",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._scheduler_idle_sleep_time",
        "override",
        (RUNNER,),
        "Stock: a float set in __init__ and slept after an idle loop. Ours: a property that ends the loop's metrics (kestra.scheduler.*), waits the back-off (cut short by NOTIFY) when read and returns 0; its setter ignores the stock assignment.",
        declared=True,
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._do_scheduling",
        "override",
        (RUNNER,),
        "Stock returns the number of TIs queued; ours counts all work of the pass (runs created or changed, TI updates, events) and returns that count when the next loop must start at once (no LISTEN, a step stopped at its batch or budget, a full critical section, runs created, a run ended while others are queued), else 0, so the stock loop reads the idle wait, which a notification other than our own echoes ends at once.",
        params=("self", "session"),
        fingerprint="c0c6f662fe15b8afb730a8272abab74e615053350828fc28abe0438456ef5d62",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._process_executor_events",
        "override",
        (RUNNER,),
        "Stock (3.3) returns the number of events it took from the buffer; ours counts them before calling it as the loop's work; when there were any and the last pass queued as many as it could take (or without LISTEN: then the events are the only sign of freed slots) it marks the critical section due and returns the count (the stock loop then skips its idle sleep), else 0.",
        params=("self", "executor", "session"),
        fingerprint="b9aa7f75c2fd2e0fefc37c3befa89dc4a037ef242c9b12f0fabb5de2e48481ef",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._critical_section_enqueue_task_instances",
        "override",
        (RUNNER,),
        "Stock runs the critical section every loop; ours skips it when nothing could have made a TI queueable (recheck interval bounds the wait), and computes the stock max_tis (parallelism minus occupied executor slots, capped by job.max_tis_per_query unless 0) to tell a pass that queued all it could take.",
        params=("self", "session"),
        fingerprint="9da4288f3bc192f158451f567d50c78a24e61119d62be79e75979f06e8d7ff61",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._parallelism",
        "relied-on",
        (RUNNER,),
        "[core] parallelism as the stock critical section reads it for its max_tis; ours reads it to compute the same limit.",
        declared=True,
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._enqueue_executor_callbacks",
        "override",
        (RUNNER,),
        "Stock queries pending executor callbacks in every loop; ours calls it at most once per scheduler_recheck_interval (every loop when 0), the cadence of the stock idle loop.",
        params=("self", "session"),
        fingerprint="89f87d0850ebbb10a414654fee99a883a0975dc606e8a8e0ee25d647bbdec5d0",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._enqueue_connection_tests",
        "override",
        (RUNNER,),
        "Stock counts and locks pending connection tests in every loop (three queries); ours calls it at most once per scheduler_recheck_interval (every loop when 0), the cadence of the stock idle loop.",
        params=("self", "session"),
        fingerprint="f2d40bf04bdc8e0890474c8640733d496cbc55ed9a2099b5760b0168490ce7e3",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._get_current_dag",
        "reimplemented",
        (RUNNER,),
        "Stock deserializes the latest serialized_dag row on every call; ours answers from the batch prefetch or KestraDagCache, with the same error handling.",
        params=("self", "dag_id", "session"),
        fingerprint="b382c59e3535471c72831b8961eac65730b4aa9db7a36b65df196b6df6ea57c2",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner.scheduler_dag_bag",
        "relied-on",
        (RUNNER,),
        "Every stock DAG lookup of the scheduler (start, examine, callbacks, executor events) goes through this attribute; we set it to KestraDagCache.",
        declared=True,
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._create_dagruns_for_dags",
        "reimplemented",
        (RUNNER, DUE_DAGS),
        "Stock: partitioned asset DAGs, then dags_needing_dagruns (asset-triggered and max_dagruns_to_create_per_loop due DAGs), one commit. Ours: same steps, due DAGs in budgeted batches with a commit per batch.",
        params=("self", "guard", "session"),
        fingerprint="e270cfaa038647d8a679a3042ad9cc74337e8361a1be65881eb10ea726cc18f5",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._create_dagruns_for_partitioned_asset_dags",
        "call",
        (RUNNER,),
        "Called first, as stock does; returns the dag ids it handled.",
        params=("self", "session"),
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._create_dag_runs",
        "reimplemented",
        (RUNNER, BULK_RUNS),
        "Called for DAGs the bulk path does not take; bulk_runs.split repeats its skip checks (max active runs, next-run fields, allowed run types, existing run) and create_runs its create_dagrun call.",
        params=("self", "dag_models", "session"),
        fingerprint="dcce24d088dd67c167e593c09332d14a2cb0ebd854fbcb49d5a8ed678dc4f00a",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._create_dag_runs_asset_triggered",
        "call",
        (RUNNER,),
        "Called with the locked ready asset-triggered DAGs (keyword arguments).",
        params=("self", "dag_models", "session"),
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._set_exceeds_max_active_runs",
        "override",
        (RUNNER,),
        "Stock counts the DAG's active runs with one query per run that ends; ours, while a batch of running runs is examined, counts them once for the batch's DAGs and takes off the batch's runs that ended since, then calls stock with the count. The bulk creation path sets exceeds_max_non_backfill with the same comparison, from one active_runs_of_dags query per batch.",
        params=("self", "dag_model", "active_non_backfill_runs", "session"),
        fingerprint="ae29ab2e1eb7d21e97a54f9e157e1dfb3f3334250a402e887e0fbd7b23ca74b0",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._start_queued_dagruns",
        "override",
        (RUNNER, QUEUED_RUNS),
        "We call it per batch with DagRun.get_queued_dag_runs_to_set_running patched (it must call it by class attribute) and its running-count SELECT (dag_id, backfill_id, num_running) restricted by a do_orm_execute listener.",
        params=("self", "session"),
        fingerprint="b4b5de64dd0e87574dea4ac9f0ef29e15721583d7fc569f12b7eff4b4a86b62d",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._schedule_all_dag_runs",
        "override",
        (RUNNER, EXAMINED_TIS, RUNNING_RUNS),
        "Stock examines one batch; ours examines further batches within the loop budget, each with its dag rows and task instances loaded first, and calls the stock method per batch.",
        params=("self", "guard", "dag_runs", "session"),
        fingerprint="7077564d5f24f3e3546dd5fe2dcc78bd6d394e331402cd7fdf45219b5a8a0344",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._schedule_dag_run",
        "override",
        (RUNNER, EXAMINED_TIS, RUNNING_RUNS, SHORT_CIRCUITED),
        "Ours calls stock again at once while its schedule_tis set EmptyOperator TIs to success and the run is still running. Per run, stock does: get_dag_for_run, DM.get_dagmodel (session.get of a row we preloaded), _verify_integrity_if_dag_changed only without bundle_version, then update_state (which reads get_task_instances), then _set_exceeds_max_active_runs without a count for a non-backfill run that ended.",
        params=("self", "dag_run", "session"),
        fingerprint="5ef43bfc3621d8f4c15646c9b4be0b82d4eb5068a0f78eeb59467c790cc3c1f3",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._verify_integrity_if_dag_changed",
        "override",
        (RUNNER, RUNNING_RUNS, DAG_CACHE),
        "Stock asks get_latest_version and check_version_id_exists_in_dr per run; ours answers both for the whole batch with one query each, and calls stock only for runs not on the newest version.",
        params=("self", "dag_run", "session"),
        fingerprint="6e5eb8b77ed42ae834236f6dfe28a0e18e9b19a15bb6dd29c039927aa0e10bd6",
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._stamp_team_names",
        "call",
        (RUNNER,),
        "Called on our extra batches of running runs, as stock _do_scheduling does on its batch.",
        params=("self", "dag_runs", "session"),
    ),
    Seam(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._execute",
        "call",
        (SCHEDULER_CLI,),
        "The callable run_job runs, as in the stock scheduler command.",
        params=("self",),
    ),
    Seam(
        "airflow.utils.sqlalchemy.CommitProhibitorGuard.expected_commit",
        "relied-on",
        (RUNNER,),
        "We set it before releasing the bulk path's SAVEPOINT, which SQLAlchemy reports to the guard's before_commit listener as a commit.",
    ),
    Seam(
        "airflow.utils.sqlalchemy.CommitProhibitorGuard._validate_commit",
        "relied-on",
        (RUNNER,),
        "Lets one commit through when expected_commit is set, then resets it.",
        params=("self", "_"),
        fingerprint="69b3754935b440aa52facaa88ac15b8f9419f416fe03a0c6677f152e9c542ad4",
    ),
    Seam(
        "airflow.utils.sqlalchemy.with_row_locks",
        "call",
        (DUE_DAGS, QUEUED_RUNS, RUNNING_RUNS),
        "FOR UPDATE SKIP LOCKED on our batch queries, as the stock queries lock.",
        params=("query", "session", "nowait", "skip_locked", "key_share", "kwargs"),
    ),
    Seam(
        "airflow.utils.sqlalchemy.nulls_first",
        "call",
        (QUEUED_RUNS,),
        "The stock queued-run order.",
        params=("col", "session"),
    ),
    Seam(
        "airflow._shared.timezones.timezone.utcnow",
        "call",
        (RUNNER,),
        "Private package airflow._shared: the recheck cutoff.",
        params=(),
    ),
    Seam(
        "airflow._shared.timezones.timezone.coerce_datetime",
        "call",
        (BULK_RUNS,),
        "Private package airflow._shared: what create_dagrun applies to logical_date and run_after.",
        params=("v", "tz"),
    ),
    Seam(
        "airflow.observability.stats.incr",
        "call",
        (BULK_RUNS, METRICS),
        "Re-export of airflow._shared.observability.metrics.stats.incr, the Stats the scheduler initializes: the task_instance_created counter the stock TI creation emits, and our kestra.* counters.",
        params=("stat", "count", "rate", "tags"),
    ),
    # -- dag runs -----------------------------------------------------------------------------
    Seam(
        "airflow.models.dagrun.DagRun.__init__",
        "call",
        (BULK_RUNS,),
        "The bulk path builds each run with the keyword arguments _create_orm_dagrun passes.",
        params=(
            "self",
            "dag_id",
            "run_id",
            "queued_at",
            "logical_date",
            "run_after",
            "start_date",
            "conf",
            "state",
            "run_type",
            "creating_job_id",
            "data_interval",
            "triggered_by",
            "triggering_user_name",
            "backfill_id",
            "bundle_version",
            "partition_key",
            "partition_date",
            "note",
        ),
    ),
    Seam(
        "airflow.models.dagrun.DagRun.get_running_dag_runs_to_examine",
        "relied-on",
        (RUNNER, RUNNING_RUNS),
        "Never-examined first, then oldest last_scheduling_decision, DEFAULT_DAGRUNS_TO_EXAMINE at a time, locked; we take further batches of it and add the runs a finished TI waits on.",
        params=("session",),
        fingerprint="7e43b0ba1f6ba352e5ff27ba5d214f8060fde0e0ea822d4019276a215df4eacf",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.DEFAULT_DAGRUNS_TO_EXAMINE",
        "call",
        (RUNNER,),
        "The stock batch size ([scheduler] max_dagruns_per_loop_to_schedule).",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.get_queued_dag_runs_to_set_running",
        "patch",
        (QUEUED_RUNS,),
        "Replaced on the class while our _start_queued_dagruns calls the stock one; lock_queued_runs_to_start reimplements its filters, order and locking with a correlated running count.",
        params=("session",),
        fingerprint="906aed170b941a89de691be097cf761bcf5423b36b881efaa93fd10abeccd561",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.active_runs_of_dags",
        "call",
        (RUNNER,),
        "Active non-backfill runs per DAG after a bulk batch, as _create_dag_runs counts them, and once per examined batch for the runs that end in it.",
        params=("dag_ids", "exclude_backfill", "session"),
    ),
    Seam(
        "airflow.models.taskinstance.TaskInstance.is_schedulable",
        "call",
        (SHORT_CIRCUITED,),
        "Read per TI handed to schedule_tis: false for the trivial EmptyOperators that schedule_tis sets to success.",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.get_task_instances",
        "patch",
        (EXAMINED_TIS,),
        "Set on each examined run (instance attribute) to answer its first call for every state from one batch query; every other call goes to the stock method.",
        params=("self", "state", "session"),
        fingerprint="6f9acfabd0b3c11f820f1a1463ceafecc15241a82fe892442e0279c5a24c2d6c",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.task_instance_scheduling_decisions",
        "relied-on",
        (EXAMINED_TIS,),
        "Reads the run's TIs once with self.get_task_instances(state=State.task_states, session=...), partial DAGs aside; that is the call examined_tis answers.",
        params=("self", "session"),
        fingerprint="e3f1a1224f3f579b6392a331565d9ab588da2116681f448e584e1dbb57ef2607",
    ),
    Seam(
        "airflow.models.dagrun.DagRun._get_partial_task_ids",
        "call",
        (EXAMINED_TIS,),
        "A partial DAG filters the TIs by task id: examined_tis leaves those runs to the stock read.",
        params=("dag",),
    ),
    Seam(
        "airflow.models.dagrun.DagRun.check_version_id_exists_in_dr",
        "reimplemented",
        (RUNNING_RUNS,),
        "runs_with_tis_of_versions asks its question (a TI or TI history row of that version) for a whole batch in one query.",
        params=("self", "dag_version_id", "session"),
        fingerprint="f7729a1e3309f9fb05f4f2b4a53de86dd472366d9ffe2e4dc3d6c280e920ed7a",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.verify_integrity",
        "reimplemented",
        (BULK_RUNS,),
        "For a new run of a plain DAG the bulk path builds the same TI rows (task start/end date filter, insert_mapping) without the removed/restored check (a new run has no TIs).",
        params=("self", "session", "dag_version_id"),
        fingerprint="40af31881253cc212c0ccdb18c3a1a0315627824322f35196948dd901c5dbbb3",
    ),
    Seam(
        "airflow.models.dagrun.DagRun._get_task_creator",
        "reimplemented",
        (BULK_RUNS,),
        "With a no-op mutation hook: one insert_mapping per map index and a count per task type, as ti_rows does.",
        params=("self", "created_counts", "ti_mutation_hook", "hook_is_noop", "dag_version_id"),
        fingerprint="ae43598548a7409a144e27f929254f76d64c6b4cc57cd4a638b08f08005e36a5",
    ),
    Seam(
        "airflow.models.dagrun.DagRun._create_tasks",
        "reimplemented",
        (BULK_RUNS,),
        "An unmapped task gets map index -1; the bulk path takes no DAG with mapped tasks.",
        params=("self", "tasks", "task_creator", "session"),
        fingerprint="966fcfa360fd9447dbe1fed9a27f85b3d43d3f414ecf04a3422aba038deb6194",
    ),
    Seam(
        "airflow.models.dagrun.DagRun._create_task_instances",
        "reimplemented",
        (BULK_RUNS,),
        "bulk_insert_mappings of the rows, the task_instance_created counter, a flush: create_runs does the same for a batch.",
        params=("self", "dag_id", "tasks", "created_counts", "hook_is_noop", "session"),
        fingerprint="7ceec753bf30fdb3543b1dba09215739ed9de6a8a138a59e4ffe1420c897c969",
    ),
    Seam(
        "airflow.models.dagrun.DagRun.schedule_tis",
        "patch",
        (WORK, SHORT_CIRCUITED),
        "Sets TI states with ORM UPDATEs of TaskInstance (synchronize_session=False), which LoopWork counts as work through do_orm_execute; trivial EmptyOperators (not is_schedulable) go straight to success. Set on each examined run (instance attribute) to note the TIs handed over when one of them is short-circuited, then calls the stock method.",
        params=("self", "schedulable_tis", "session", "max_tis_per_query"),
        fingerprint="b640d1cd2b459f3202317771dd1f01c397551edfb748aa81607b2f440b5fc1f3",
    ),
    Seam(
        "airflow.models.dagrun.DagRun._state",
        "relied-on",
        (WORK,),
        "The mapped attribute behind DagRun.state; LoopWork reads its history to count runs that changed state.",
    ),
    Seam(
        "airflow.models.dagrun.RUN_ID_REGEX",
        "call",
        (BULK_RUNS,),
        "The run id check create_dagrun makes.",
    ),
    Seam(
        "airflow.serialization.definitions.dag.SerializedDAG.create_dagrun",
        "reimplemented",
        (BULK_RUNS,),
        "build_run repeats its checks (run id, params) and arguments for a scheduled run; DAGs with deadlines or partitions stay on the stock path.",
        params=(
            "self",
            "run_id",
            "logical_date",
            "data_interval",
            "run_after",
            "conf",
            "run_type",
            "triggered_by",
            "triggering_user_name",
            "state",
            "start_date",
            "creating_job_id",
            "backfill_id",
            "partition_key",
            "partition_date",
            "note",
            "session",
        ),
        fingerprint="29e8dbcf7b708cd6a860d48c60d72e41eaacd6031334b88b914c31a79d0912ab",
    ),
    Seam(
        "airflow.serialization.definitions.dag._create_orm_dagrun",
        "reimplemented",
        (BULK_RUNS,),
        "build_run sets the same fields (bundle_version, latest dag_version, max log template id, consumed events); create_runs writes a batch with one INSERT instead of add and flush.",
        params=(
            "dag",
            "run_id",
            "logical_date",
            "data_interval",
            "run_after",
            "start_date",
            "conf",
            "state",
            "run_type",
            "creating_job_id",
            "backfill_id",
            "triggered_by",
            "triggering_user_name",
            "partition_key",
            "partition_date",
            "note",
            "session",
        ),
        fingerprint="3d87b1c85d18bf1627a3bcb5e8eb82a91b9586d26801e4d78d8a4008c2cbd3da",
    ),
    Seam(
        "airflow.serialization.definitions.dag.SerializedDAG.next_dagrun_info",
        "relied-on",
        (NEXT_RUN_MEMO,),
        "For Airflow's own timetables its answer depends only on the timetable, the time restriction, the last run and restricted: NextRunMemo shares it within a batch.",
        params=("self", "last_automated_run_info", "restricted"),
        fingerprint="f6b8a898efb4476bb1819eb5ae01299f57e17133aa78f60b3398e7a385a9a3d2",
    ),
    Seam(
        "airflow.serialization.definitions.dag.SerializedDAG._time_restriction",
        "relied-on",
        (NEXT_RUN_MEMO,),
        "The restriction next_dagrun_info applies; part of NextRunMemo's key.",
        fingerprint="83abbfd05970d5353925b66a17df4ba17be9333f3ce929e1310c93d9ddf218fa",
    ),
    Seam(
        "airflow.models.dag.DagModel.calculate_dagrun_date_fields",
        "relied-on",
        (RUNNER, NEXT_RUN_MEMO),
        "Uses only dag.timetable and dag.next_dagrun_info of the DAG it is given, so it accepts NextRunMemo's view.",
        params=("self", "dag", "reference_run"),
        fingerprint="f0faebbe91c6cd10ba9de15491c27b392bbf433a02f924e5baa837a7218f92e0",
    ),
    Seam(
        "airflow.models.dag.DagModel.dags_needing_dagruns",
        "reimplemented",
        (DUE_DAGS,),
        "due_dags makes the same decisions (asset conditions, max_active_runs, schedulable DAGs) with cached DAGs and a memo, and locks due DAGs in batches of any size.",
        params=("session",),
        fingerprint="9814f181e5925529529a8883122a7cfbee8f3abefda495aa9ae2596c1a928e41",
    ),
    Seam(
        "airflow.models.dag_version.DagVersion.get_latest_version",
        "reimplemented",
        (DAG_CACHE,),
        "newest_versions picks the same row (highest version_number) for many DAGs in one query.",
        params=("dag_id", "bundle_version", "load_dag_model", "load_bundle_model", "session"),
        fingerprint="de76b02e2a412ead959d6633459b0fa6b2c047e8fb4560b2778684e1c9a963d5",
    ),
    Seam(
        "airflow.models.taskinstance.TaskInstance.insert_mapping",
        "call",
        (BULK_RUNS,),
        "The TI row verify_integrity inserts, built by Airflow.",
        params=("run_id", "task", "map_index", "dag_version_id", "dag_run"),
    ),
    Seam(
        "airflow.models.taskinstancekey.TaskInstanceKey",
        "call",
        (EXECUTOR,),
        "Built positionally from our kestra_workload columns when adopting: the field order must stay dag_id, task_id, run_id, try_number, map_index.",
        params=("dag_id", "task_id", "run_id", "try_number", "map_index"),
    ),
    Seam(
        "airflow.settings.task_instance_mutation_hook.is_noop",
        "relied-on",
        (BULK_RUNS,),
        "Set on the default hook; without it (a custom hook) every DAG takes the stock path, as verify_integrity switches to ORM objects.",
    ),
    Seam(
        "airflow.assets.evaluation.AssetEvaluator.run",
        "call",
        (DUE_DAGS,),
        "Evaluates an asset condition against the queued assets' statuses, as dags_needing_dagruns does.",
        params=("self", "o", "statuses"),
    ),
    Seam(
        "airflow.utils.state.State.task_states",
        "relied-on",
        (EXAMINED_TIS,),
        "The state filter task_instance_scheduling_decisions passes; examined_tis answers only that call.",
    ),
    # -- the DAG cache (scheduler/dag_cache.py subclasses CachedDBDagBag) ----------------------
    Seam(
        "airflow.models.dagbag.CachedDBDagBag.__init__",
        "relied-on",
        (DAG_CACHE,),
        "Builds the version-keyed LRU in _dags and the RLock in _lock that KestraDagCache reads and writes.",
        params=("self", "load_op_links", "cache_size", "cache_ttl", "stats_prefix"),
        fingerprint="5f8598ab913282ebc9a5f78879f4bf6d17ff3df7752478ce761867b8b842b4a5",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag._dags",
        "relied-on",
        (DAG_CACHE,),
        "dag_version_id -> _CacheEntry; read and refreshed under _lock by get_versions and _revalidate.",
        declared=True,
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag._lock",
        "relied-on",
        (DAG_CACHE,),
        "Guards _dags.",
        declared=True,
    ),
    Seam(
        "airflow.models.dagbag._CacheEntry",
        "relied-on",
        (DAG_CACHE,),
        "A NamedTuple (dag, dag_hash, last_validated); we compare dag_hash and _replace last_validated.",
        params=("dag", "dag_hash", "last_validated"),
        fingerprint="02d0fd88eb0dd471b6195176a67035f656ee982990d9b7532753ebfed80b2219",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag._read_dag",
        "relied-on",
        (DAG_CACHE,),
        "Deserializes a row and stores its _CacheEntry: how our batch lookups fill the cache.",
        params=("self", "serdag"),
        fingerprint="71ffee92ab9d7bf4ffe30140665f4e8dfbdc5885ad3ac59946769e1d7b243a53",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag._get_dag",
        "reimplemented",
        (DAG_CACHE,),
        "get_versions and _revalidate repeat its hash check (serve, restart the window, or drop a stale entry) for a batch from one query's answer; get_dag_for_run calls it.",
        params=("self", "version_id", "session"),
        fingerprint="5ebf0d66b6be608d2048b5a8c52f9e0ad9a5ee578536925a64fe98705f51851e",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag._version_from_dag_run",
        "reimplemented",
        (DAG_CACHE,),
        "_version_for_run gives the same answer, the newest version coming from one query per batch.",
        params=("dag_run", "session"),
        fingerprint="6064636cd25a5a218a679bdbd12ccb19f030f8d855e7ba3bc068f4aca4528559",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag.get_dag_for_run",
        "override",
        (DAG_CACHE,),
        "Same body with _version_for_run instead of _version_from_dag_run.",
        params=("self", "dag_run", "session"),
        fingerprint="4a52d353801134a437f3040f1c540435adb036a3ada83dad908a644688e4c5a6",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag.get_serialized_dag_model_for_run",
        "override",
        (DAG_CACHE,),
        "Same body with _version_for_run instead of _version_from_dag_run.",
        params=("self", "dag_run", "session"),
        fingerprint="2b6df0628552a29035296061661f4f0672ec161bd50909dba41f9a7537702564",
    ),
    Seam(
        "airflow.models.dagbag.DBDagBag.get_serialized_dag_model",
        "call",
        (DAG_CACHE,),
        "Called by our get_serialized_dag_model_for_run.",
        params=("self", "version_id", "session"),
    ),
    Seam(
        "airflow.models.dagbag.CachedDBDagBag._on_cache_hit",
        "override",
        (DAG_CACHE,),
        "Counts hits for our stats line, then the stock metric.",
        params=("self",),
        fingerprint="789cf9d48957e11a89e99e1eae6fee70d8968cd2918c39929055166c24764874",
    ),
    Seam(
        "airflow.models.dagbag.CachedDBDagBag._on_cache_miss",
        "override",
        (DAG_CACHE,),
        "Counts misses for our stats line, then the stock metric.",
        params=("self",),
        fingerprint="d291355a1f7d1349a160198e876c38c061024c342af0eefb47590d620f2aa3aa",
    ),
    Seam(
        "airflow.models.serialized_dag.SerializedDagModel._sort_serialized_dag_dict",
        "call",
        (SCALE_CLONE,),
        "The canonical form SerializedDagModel.hash feeds to md5; the bench clone recomputes the hash in SQL from it.",
        params=("serialized_dag",),
    ),
    Seam(
        "airflow.models.serialized_dag.SerializedDagModel.hash",
        "reimplemented",
        (SCALE_CLONE,),
        "The bench clone computes dag_hash in SQL (md5 of the canonical JSON without fileloc) and checks it against this at run time.",
        params=("dag_data",),
        fingerprint="8550767a6cdc4f95523fad853802ba7d0c0977998f7bc0da06bca5814727a7ee",
    ),
    # -- cron descriptions (scheduler/cron_descriptions.py) ------------------------------------
    Seam(
        "airflow.timetables._cron.CronMixin._describe_with_dom_dow_fix",
        "patch",
        (CRON,),
        "Private module: wrapped in an LRU keyed by the expression, called with self=None; valid while its result depends on the expression alone.",
        params=("self", "expression"),
        fingerprint="b36d8bd5656071c90197bfb08a167dea96ea196c9c7fcec384542dc93faa3d95",
    ),
    Seam(
        "airflow.timetables._cron.CronMixin.__init__",
        "relied-on",
        (CRON,),
        "Computes the description on every deserialization by calling self._describe_with_dom_dow_fix(expression).",
        params=("self", "cron", "timezone"),
        fingerprint="907cb6a604550a6eda748f42bf33bca133e8ae42bd813e3ccbc7c3133126388e",
    ),
    # -- the scheduler command (cli/scheduler_command.py) --------------------------------------
    Seam(
        "airflow.cli.commands.scheduler_command.scheduler",
        "reimplemented",
        (SCHEDULER_CLI,),
        "Our scheduler command repeats its start-up (banner, --only-idle check, hot reload, daemon option) with our job runner.",
        params=("args",),
        fingerprint="68c123ffb6ec0efce19860f03756c57f03fc71fdf736e67001418e198c64e64c",
    ),
    Seam(
        "airflow.cli.commands.scheduler_command._run_scheduler_job",
        "reimplemented",
        (SCHEDULER_CLI,),
        "Copied as _run_kestra_scheduler_job with KestraSchedulerJobRunner.",
        params=("args",),
        fingerprint="e7152ef6f062a547080e66c91d52bb4a74825e6c9f670712ec9b0b9cbd53dd15",
    ),
    Seam(
        "airflow.cli.commands.scheduler_command._serve_logs",
        "call",
        (SCHEDULER_CLI,),
        "Private: the log server context manager of the stock command.",
        params=("skip_serve_logs",),
    ),
    Seam(
        "airflow.cli.commands.scheduler_command._serve_health_check",
        "call",
        (SCHEDULER_CLI,),
        "Private: the health check server context manager of the stock command.",
        params=("enable_health_check",),
    ),
    Seam(
        "airflow.cli.cli_config.core_commands",
        "relied-on",
        (CLI_DEFINITION,),
        "Holds the ActionCommands named scheduler and triggerer whose args our commands reuse.",
    ),
    # -- the triggerer (triggerer/: airflow kestra triggerer) -------------------------------------
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggererJobRunner._execute",
        "reimplemented",
        (TRIGGERER_JOB,),
        "Ours does the same (process context, signals, Stats, start the supervisor, run it, kill it at the end) with KestraTriggerRunnerSupervisor instead of TriggerRunnerSupervisor.",
        params=("self",),
        fingerprint="2615246eae3bb078d63c3671ce560d9f2c4c8862e7f8224c3018b6cb2e0e850a",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggererJobRunner.trigger_runner",
        "relied-on",
        (TRIGGERER_JOB,),
        "Set by _execute; the stock on_kill and _exit_gracefully stop the supervisor through it.",
        declared=True,
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor.run_once",
        "reimplemented",
        (TRIGGERER_SUPERVISOR,),
        "Stock: load_triggers, wait up to 1 s for the subprocess, handle events and failures, clean_unused, heartbeat, emit_metrics. Ours makes the same calls, with clean_unused and load_triggers only when notified, right after a load that changed something, or on the reconcile interval, and a wait that a NOTIFY ends.",
        params=("self",),
        fingerprint="6353b47e2004484027c6b212106383e664d2a0f312fd14ea0df3fbc27088da17",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor.run_context",
        "override",
        (TRIGGERER_SUPERVISOR,),
        "A hook the stock run() enters around its loop: ours opens the LISTEN connection inside it and closes it after.",
        params=("self",),
        fingerprint="06d7aefcdca1cbae494c8570ecfbf6b989714a8474bba45e5585626db2d9be26",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor.run",
        "relied-on",
        (TRIGGERER_SUPERVISOR,),
        "Calls run_once in a loop inside run_context until should_stop or the subprocess died.",
        params=("self",),
        fingerprint="4c3251c001137047644ced829824155ccd0ccd7ebef25cd6865413d4c0eae4f8",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor.run_in_process",
        "override",
        (TRIGGERER_SUPERVISOR,),
        "The subprocess's entry point: ours runs KestraTriggerRunner instead of TriggerRunner.",
        params=(),
        fingerprint="871af9a2e368aab2bf252770173d04735b398830e9defc7d6ee30047029c1c1f",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor._service_subprocess",
        "relied-on",
        (TRIGGERER_SUPERVISOR,),
        "Waits on self.selector and calls each ready key's data as (handler, on_close): handler(fileobj) returning False means on_close(fileobj) then fileobj.close(). Our LISTEN connection sits in that selector.",
        params=("self", "max_wait_time", "raise_on_timeout", "expect_signal"),
        fingerprint="f5e8e84004311ab75f908085e5b08974a17a1d1f2b6df35b6c3349682c082bae",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor._handle_request",
        "relied-on",
        (TRIGGERER_SUPERVISOR,),
        "Answers every TriggerStateChanges of the subprocess with the whole creating_triggers and cancelling_triggers: why waking the subprocess after a load hands it the new triggers at once.",
        params=("self", "msg", "log", "req_id"),
        fingerprint="6c5516fa4018c0fdcfa805be63a8ba52715fb98c8dc0230dd8dd98b6c0b9c23a",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor.handle_events",
        "reimplemented",
        (TRIGGERER_SUPERVISOR,),
        "Stock: pops each event, Trigger.submit_event in a transaction of its own, then records its persist_seq and counts triggers.succeeded. Ours hands every event on with submit_events (triggerer/events.py), up to 500 in one transaction, then does the same bookkeeping, and leaves a failed batch to the stock method.",
        params=("self",),
        fingerprint="c7dd35dcb793107d9c730dca66d8ed88498c48693d59488486017d4f9442cf91",
    ),
    Seam(
        "airflow.models.trigger.Trigger.submit_event",
        "reimplemented",
        (TRIGGERER_EVENTS,),
        "Stock, per event: select the task instances deferred on the trigger, handle_event_submit each (ORM, a flush each), then select the trigger with its asset watchers, register an asset change per asset, hand the event to its callback; it does not commit. submit_events gives the same rows for a batch: one select of the deferred rows, the stock base handler run on a stand-in row for a resume, the success/skipped end reimplemented, one executemany UPDATE per kind, and the stock handler on the ORM task instance for every other case; then one select of those triggers that have an asset watcher or a callback (the others need nothing more). tests/unit/triggerer/test_events.py compares the rows with stock's.",
        params=("trigger_id", "event", "session"),
        fingerprint="9f37209d7c1622d15aa0492674821da7b8da56c049ec1c9509f3ab4770dcd373",
    ),
    Seam(
        "airflow.models.trigger.handle_event_submit",
        "call",
        (TRIGGERER_EVENTS,),
        "singledispatch on the event type. The base handler (any TriggerEvent) reads and sets only next_method, next_kwargs, trigger_id, state and scheduled_dttm of the task instance (and logs it), then flushes the session it is given: submit_events runs it on a DeferredRow with a session whose flush does nothing and writes those columns. The handler registered for BaseTaskEndEvent is reimplemented for success and skipped without XComs (see TaskInstance.set_state), and called as is otherwise; event_kind tells them apart with dispatch().",
        params=("event", "task_instance", "session"),
        fingerprint="edf645d083ed8190908b039e634421e533ee484c85e319818c34b5bcfac16475",
    ),
    Seam(
        "airflow.callbacks.database_callback_sink.DatabaseCallbackSink.send",
        "reimplemented",
        (TRIGGERER_EVENTS,),
        "Stock adds DbCallbackRequest(callback=request, priority_weight=1) to the session (a flush each). insert_callback_requests builds the same objects and writes their column values with one executemany INSERT (id and created_at from the column defaults); the events test compares the rows.",
        params=("self", "callback", "session"),
        fingerprint="de2666ccc2def1439c949a8cf142a85f5dccbb72ac98f28c0bb79a11a9f822c1",
    ),
    Seam(
        "airflow.models.taskinstance.TaskInstance.set_state",
        "reimplemented",
        (TRIGGERER_EVENTS,),
        "What the BaseTaskEndEvent handler does for success or skipped without XComs: trigger_id None, a TaskCallbackRequest through DatabaseCallbackSink for success (RuntimeError when the DAG has no relative_fileloc), then set_state: state, start_date if none, end_date if none, duration = end - start. Batch.end writes the same columns (the test compares the rows).",
        params=("self", "state", "session"),
        fingerprint="ce5fc670321bab967fc8c730f5e1ac75e16f801eff3985b86ddcee3d5d9bf9cb",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner.arun",
        "override",
        (TRIGGERER_ASYNC,),
        "Ours installs the wake-up signal handler, then runs the stock loop: cleanup_finished_triggers, sync_state_to_supervisor, create_triggers, cancel_triggers, then a wait of up to 1 s on _stop_event. Our cancel_triggers does the waiting and sets _stop_event so that stock wait returns at once.",
        params=("self",),
        fingerprint="8771c4ad2b262896bc243494a7c261f41c641441033cb79c47c577c8759630dd",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner._stop_event",
        "patch",
        (TRIGGERER_ASYNC,),
        "Created by arun for its 1 s wait and set by _handle_signal on stop; we set it once so that wait returns at once (ours replaces it).",
        declared=True,
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner._handle_signal",
        "override",
        (TRIGGERER_ASYNC,),
        "SIGINT/SIGTERM: sets stop and _stop_event; ours also ends our wait.",
        params=("self", "signum", "frame"),
        fingerprint="2ac678dd25034580d680ff03d184862a20398f333dfd903a042d790a3b5f8b68",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner.cancel_triggers",
        "override",
        (TRIGGERER_ASYNC,),
        "The last call of the loop before its wait: ours runs the stock one, then waits for a wake-up (an event, the supervisor's signal) or 1 s.",
        params=("self",),
        fingerprint="90004f224ec65c534668098655571ccd57236da1606adb70b529ea222c9f26b3",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner.cleanup_finished_triggers",
        "override",
        (TRIGGERER_ASYNC,),
        "Walks every trigger with a sleep(0) each; ours skips the walk when no trigger task is done.",
        params=("self",),
        fingerprint="a8080bdeef3e2c33b2fde52734fb93dd58927d73d18499182a17bc07b790f9cf",
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner.events",
        "relied-on",
        (TRIGGERER_ASYNC,),
        "The outbound deque: run_trigger appends each event (append only; process_trigger_events pops them). Ours is a deque that wakes the loop on append.",
        declared=True,
    ),
    Seam(
        "airflow.jobs.triggerer_job_runner.TriggerRunner.run_trigger",
        "relied-on",
        (TRIGGERER_ASYNC,),
        "Appends each event the trigger yields to self.events with append().",
        params=("self", "trigger_id", "trigger", "timeout_after", "context"),
        fingerprint="e9c1c6130f27da95b363b77b5bee00bdec09718b035e305cc1524fa6704a592b",
    ),
    Seam(
        "airflow.cli.commands.triggerer_command.triggerer",
        "reimplemented",
        (TRIGGERER_CLI,),
        "Our triggerer command makes the same checks (queues enabled, team) and start-up with KestraTriggererJobRunner.",
        params=("args",),
        fingerprint="174533656e0adfc63f2d8d60b3ab0b2af0f0df18bd5790bd5e3794e4c4a10a35",
    ),
    Seam(
        "airflow.cli.commands.triggerer_command._serve_logs",
        "call",
        (TRIGGERER_CLI,),
        "Private: the trigger log server context manager of the stock command.",
        params=("skip_serve_logs",),
    ),
    Seam(
        "airflow.sdk._shared.secrets_masker.SecretsMasker",
        "call",
        (TRIGGERER_CLI,),
        "enable_log_masking(), as the stock triggerer command calls it first.",
        check_signature=False,
    ),
    # -- metrics (metrics.py): Airflow's Stats, as the scheduler and the triggerer initialize it --
    Seam(
        "airflow.observability.stats.gauge",
        "call",
        (METRICS,),
        "Re-export of the shared Stats gauge: our kestra.* gauges.",
        params=("stat", "value", "rate", "delta", "tags"),
    ),
    Seam(
        "airflow.observability.stats.timing",
        "call",
        (METRICS,),
        "Re-export of the shared Stats timing (a timedelta is sent as milliseconds): our kestra.* timers.",
        params=("stat", "dt", "tags"),
    ),
    Seam(
        "airflow.observability.stats.normalize_name_for_stats",
        "call",
        (METRICS,),
        "Replaces the characters StatsD names cannot hold in a worker or queue name we append to a metric name.",
        params=("name", "log_warning"),
    ),
    Seam(
        "airflow.observability.stats.initialize",
        "call",
        (METRICS,),
        "initialize_stats in an airflow kestra worker process makes the call the triggerer's _execute makes.",
        params=("factory", "export_legacy_names"),
    ),
    Seam(
        "airflow.observability.metrics.stats_utils.get_stats_factory",
        "call",
        (METRICS,),
        "The backend factory ([metrics] statsd_on, statsd_datadog_enabled, otel_on) the scheduler and the triggerer initialize Stats with.",
        params=(),
    ),
    # -- the executor (executors/kestra_executor.py subclasses BaseExecutor) -------------------
    Seam(
        "airflow.executors.base_executor.BaseExecutor.__init__",
        "relied-on",
        (EXECUTOR, METRICS),
        "Initializes the shared Stats from [metrics] (stats_utils.get_stats_factory, legacy_names_on), so the scheduler's and executor's kestra.* metrics go where Airflow's go without a call of ours.",
        params=("self", "parallelism", "team_name"),
        fingerprint="d095ea27b510c4837f2ac036c7f44c5cd5c5d31984a8a559ef9f8276f017ff41",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.heartbeat",
        "relied-on",
        (EXECUTOR,),
        "Calls _emit_metrics(open_slots, len(running), queued count) once per heartbeat, before trigger_tasks and sync: our queue sampling runs there.",
        params=("self",),
        fingerprint="73a41805115319dcfb9c2dc904335bcc33c78d8810759412a4ec28d645befa4e",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor._emit_metrics",
        "override",
        (EXECUTOR,),
        "Stock sends executor.open_slots, queued_tasks and running_tasks from its arguments; ours passes open_slots on and, from the last queue sample, queued = keys not written yet + this job's unclaimed workloads, running = its claimed ones (stock counts every written workload as running).",
        params=("self", "open_slots", "num_running_tasks", "num_queued_tasks"),
        fingerprint="6ccb2a203b8ab6efbca794bfee632f9312d108d7fe60a575e0038dffd84ab73a",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor._process_workloads",
        "override",
        (EXECUTOR,),
        "Our workload hand-off: pops each key from queued_tasks and adds it to running, as LocalExecutor does.",
        params=("self", "workload_items"),
        fingerprint="ac3bb08b50967ae032c10fcc89962bb0653cf34d218aa643f8106c51a049b84d",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.trigger_tasks",
        "relied-on",
        (EXECUTOR,),
        "Pops up to open_slots workloads from queued_tasks in priority order and hands them to _process_workloads in one call.",
        params=("self", "open_slots"),
        fingerprint="19123151d5a208a2bbcd08b1f3888608a6bf2c8190afefa56f497ec7fa66741f",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.start",
        "override",
        (EXECUTOR,),
        "Ours checks the Airflow version, the database and our tables, and starts the embedded worker.",
        params=("self",),
        fingerprint="6dee3fe16e109bdeb1edc88c73b0885aca2b2cc77da5e8570a14fac8963ea3ac",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.sync",
        "override",
        (EXECUTOR,),
        "Ours writes pending workloads, reaps dead workers and turns finished rows into events.",
        params=("self",),
        fingerprint="0603a25baf563eb39ec5432f39c8635476dbf21fac243517d4f6263bba2ab4fc",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.revoke_task",
        "override",
        (EXECUTOR,),
        "Ours withdraws the try's unclaimed workloads.",
        params=("self", "ti"),
        fingerprint="22a19229c9d67dfd3f7cee52ec9b2caf18ea0a2de9ffc8162609ac9f78aa558b",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.try_adopt_task_instances",
        "override",
        (EXECUTOR,),
        "Ours routes the TIs' open workloads to this job; only a queued TI without a workload goes back to be reset.",
        params=("self", "tis"),
        fingerprint="0102378ff9074b03d157c65bc7fe524df16c760f81429f82814f6728d5e167b5",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.end",
        "override",
        (EXECUTOR,),
        "Ours drains the embedded worker; no final sync (the adopting job reports).",
        params=("self",),
        fingerprint="d93ae310d08a701adfac1e8a6f987cdc2add2757db30ed9ab57116bd123657a1",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.terminate",
        "override",
        (EXECUTOR,),
        "Ours stops the embedded worker without draining.",
        params=("self",),
        fingerprint="e0d7ad08b8986ab00c4692a9fbb63d977dc232a7cf51ea35d722652f4acd5999",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.get_task_log",
        "override",
        (EXECUTOR,),
        "Ours returns nothing: logs are served by the worker's log server.",
        params=("self", "ti", "try_number"),
        fingerprint="6d24ad299224aa07bc10c05a5d8ef22fba51a217d35b6055733acc2df1982b8f",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.is_local",
        "relied-on",
        (EXECUTOR,),
        "Class flag we set to True (bundle cleanup and log serving treat us as local).",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.serve_logs",
        "relied-on",
        (EXECUTOR,),
        "Class flag we set to True.",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.supports_callbacks",
        "relied-on",
        (EXECUTOR,),
        "Class flag we set to False: callback workloads are not sent to us.",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.supports_connection_test",
        "relied-on",
        (EXECUTOR,),
        "Class flag we set to False: connection tests are not sent to us.",
    ),
    Seam(
        "airflow.executors.base_executor.BaseExecutor.run_workload",
        "reimplemented",
        (RUNNER_POOL, API_CLIENT),
        "Runners call it for non-task workloads; api_client.run_task repeats it for tasks with our retrying client.",
        params=("workload", "server", "dry_run", "subprocess_logs_to_stdout", "proctitle"),
        fingerprint="e053a6e71399ff383e2afe845d2c1d852d29d2e053f8aeafc474ccce0b826fd6",
    ),
    Seam(
        "airflow.executors.base_executor.get_execution_api_server_url",
        "call",
        (EXECUTOR, API_CLIENT),
        "The Execution API URL handed to the workers.",
        params=("conf_source",),
    ),
    # -- workers: task supervisor and Execution API client ------------------------------------
    Seam(
        "airflow.sdk.execution_time.supervisor.supervise_task",
        "call",
        (API_CLIENT,),
        "Called with our RetryWindowClient as its client argument.",
        params=(
            "ti",
            "bundle_info",
            "dag_rel_path",
            "token",
            "server",
            "dry_run",
            "log_path",
            "subprocess_logs_to_stdout",
            "client",
            "sentry_integration",
        ),
    ),
    Seam(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._on_child_started",
        "patch",
        (SUPERVISOR_TUNING,),
        "Private: wrapped in the runners to count the start call as the first heartbeat attempt.",
        params=("self", "ti", "dag_rel_path", "bundle_info", "sentry_integration"),
        fingerprint="f144bd7c97bea215ece838327ab047833f9e9893af1c6a0cfbc26e961af66956",
    ),
    Seam(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._last_heartbeat_attempt",
        "relied-on",
        (SUPERVISOR_TUNING,),
        "Private attrs field, 0 at start, so the first monitor pass heartbeats at once; set by our wrapper.",
        declared=True,
    ),
    Seam(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._send_heartbeat_if_needed",
        "relied-on",
        (SUPERVISOR_TUNING,),
        "Heartbeats when min_heartbeat_interval has passed since _last_heartbeat_attempt.",
        params=("self",),
        fingerprint="8d795a0956ece4acacde3e75aeb98c510248c9eb4d2d93b2720e5de936b3b601",
    ),
    Seam(
        "airflow.sdk.execution_time.comms.TypeAdapter",
        "patch",
        (SUPERVISOR_TUNING,),
        "pydantic's TypeAdapter as the module looks it up; replaced in the runners by a factory of prebuilt adapters (it passes pydantic's _parent_depth).",
        params=("type", "config", "_parent_depth", "module"),
    ),
    Seam(
        "airflow.sdk.execution_time.task_runner.TypeAdapter",
        "patch",
        (SUPERVISOR_TUNING,),
        "As comms.TypeAdapter, for StartupDetails and JsonValue.",
        params=("type", "config", "_parent_depth", "module"),
    ),
    Seam(
        "airflow.sdk.execution_time.comms.CommsDecoder",
        "relied-on",
        (SUPERVISOR_TUNING,),
        "Its body_decoder and err_decoder factories call TypeAdapter(ToTask) per instance, looked up in the module at call time.",
        fingerprint="93919e4dc0bba905cc4c0f3a087a764ec24bc3eecaaeabe812a38a4e5fd0cb76",
        check_signature=False,
    ),
    Seam(
        "airflow.sdk.execution_time.comms.ToTask",
        "call",
        (SUPERVISOR_TUNING,),
        "A type the runners prebuild an adapter for.",
        check_signature=False,
    ),
    Seam(
        "airflow.sdk.execution_time.task_runner.StartupDetails",
        "call",
        (SUPERVISOR_TUNING,),
        "A type the runners prebuild an adapter for.",
        check_signature=False,
    ),
    Seam(
        "airflow.sdk.execution_time.task_runner.get_startup_details",
        "relied-on",
        (SUPERVISOR_TUNING,),
        "Calls TypeAdapter(StartupDetails), looked up in the module at call time.",
        params=(),
        fingerprint="c68744e312829ee49af929288daa666ed43e4b66af3d4eb2b080ca720f912cad",
    ),
    Seam(
        "airflow.sdk.execution_time.task_runner._serialize_rendered_fields",
        "relied-on",
        (SUPERVISOR_TUNING,),
        "Private: calls TypeAdapter(JsonValue) per rendered field, looked up in the module at call time.",
        params=("task",),
        fingerprint="cacd37ff4beb125c15197e7dae62df95f71536bed85ae4b5a0740968763bc524",
    ),
    Seam(
        "airflow.sdk.api.client.Client.__init__",
        "relied-on",
        (API_CLIENT, RUNNER_POOL),
        "Takes base_url, token and httpx options; builds its SSL context with _get_ssl_context_cached(API_SSL_CA_FILE_PATH, API_SSL_CERT_PATH), the call the runners make once before forking.",
        params=("self", "base_url", "dry_run", "token", "kwargs"),
        fingerprint="855d553cadabf99d8beec3c834421c7074061165d7443fb2647b0698aef505f5",
    ),
    Seam(
        "airflow.sdk.api.client.Client.request",
        "relied-on",
        (API_CLIENT,),
        "A tenacity-decorated method: RetryWindowClient re-wraps it with retry_with and a longer stop.",
        params=("self", "args", "kwargs"),
        fingerprint="fd2f7b601a1d9c2ed84a9fbb2970716ccf4c5faa79b6891c40eef3f4f8e3e99f",
    ),
    Seam(
        "airflow.sdk.api.client.Client._get_ssl_context_cached",
        "call",
        (RUNNER_POOL,),
        "Private: called once in the forkserver so every task process inherits the cached SSL context.",
        params=("ca_file", "ca_path"),
    ),
    Seam(
        "airflow.sdk.api.client.API_SSL_CA_FILE_PATH",
        "call",
        (RUNNER_POOL,),
        "First argument of the cached SSL context call.",
    ),
    Seam(
        "airflow.sdk.api.client.API_SSL_CERT_PATH",
        "call",
        (RUNNER_POOL,),
        "Second argument of the cached SSL context call.",
    ),
    # -- provider plumbing ----------------------------------------------------------------------
    Seam(
        "airflow.utils.db_manager.BaseDBManager.metadata",
        "relied-on",
        (DB_MANAGER,),
        "Class attribute KestraDBManager sets: our tables.",
        declared=True,
    ),
    Seam(
        "airflow.utils.db_manager.BaseDBManager.version_table_name",
        "relied-on",
        (DB_MANAGER,),
        "Class attribute KestraDBManager sets: alembic_version_kestra.",
        declared=True,
    ),
    Seam(
        "airflow.utils.db_manager.BaseDBManager.migration_dir",
        "relied-on",
        (DB_MANAGER,),
        "Class attribute KestraDBManager sets.",
        declared=True,
    ),
    Seam(
        "airflow.utils.db_manager.BaseDBManager.alembic_file",
        "relied-on",
        (DB_MANAGER,),
        "Class attribute KestraDBManager sets.",
        declared=True,
    ),
    Seam(
        "airflow.utils.db_manager.BaseDBManager.supports_table_dropping",
        "relied-on",
        (DB_MANAGER,),
        "Class attribute KestraDBManager sets.",
    ),
    Seam(
        "airflow.utils.db_manager.BaseDBManager.revision_heads_map",
        "relied-on",
        (DB_MANAGER,),
        "Class attribute KestraDBManager sets: provider version -> migration head.",
    ),
    Seam(
        "airflow.plugins_manager.AirflowPlugin.name",
        "relied-on",
        (PLUGIN,),
        "Class attribute KestraPlugin sets.",
    ),
    Seam(
        "airflow.plugins_manager.AirflowPlugin.fastapi_apps",
        "relied-on",
        (PLUGIN,),
        "Class attribute KestraPlugin sets: the /kestra status app.",
    ),
    Seam(
        "airflow.plugins_manager.AirflowPlugin.external_views",
        "relied-on",
        (PLUGIN,),
        "Class attribute KestraPlugin sets: the navigation entry.",
    ),
    Seam(
        "airflow.api_fastapi.core_api.security.get_user",
        "call",
        (STATUS_APP,),
        "The api-server's authentication dependency guarding the status app.",
        params=("request", "_oauth_token", "bearer_credentials"),
    ),
    Seam(
        "airflow.api_fastapi.app.get_auth_manager",
        "call",
        (STATUS_APP,),
        "The api-server's auth manager, asked whether a user may read the page or act on workers.",
        params=(),
    ),
    Seam(
        "airflow.api_fastapi.auth.managers.base_auth_manager.BaseAuthManager.is_authorized_view",
        "call",
        (STATUS_APP,),
        "Read access to the page and its GET endpoints: the Jobs view's permission.",
        params=("self", "access_view", "user"),
    ),
    Seam(
        "airflow.api_fastapi.auth.managers.base_auth_manager.BaseAuthManager.is_authorized_pool",
        "call",
        (STATUS_APP,),
        "Worker maintenance and drain from the page: the permission to edit pools.",
        params=("self", "method", "user", "details"),
    ),
    Seam(
        "airflow.api_fastapi.auth.managers.models.resource_details.AccessView.JOBS",
        "call",
        (STATUS_APP,),
        "The view whose read permission gates the page.",
    ),
    # -- bench loader --------------------------------------------------------------------------
    Seam(
        "airflow.dag_processing.collection.update_dag_parsing_results_in_db",
        "call",
        (SCALE_LOADER,),
        "The dag-processor's writer, called positionally by the scale loader.",
        params=(
            "bundle_name",
            "bundle_version",
            "dags",
            "import_errors",
            "parse_duration",
            "warnings",
            "session",
            "version_data",
            "warning_types",
            "files_parsed",
        ),
    ),
    Seam(
        "airflow.dag_processing.dagbag.BundleDagBag",
        "call",
        (SCALE_LOADER,),
        "Parses the generated scale DAG file.",
        params=("args", "bundle_path", "kwargs"),
    ),
    Seam(
        "airflow.assets.manager.AssetManager.register_asset_change",
        "call",
        (SCALE_LOADER,),
        "Queues the shared asset's event for every consumer DAG.",
        params=(
            "task_instance",
            "asset",
            "extra",
            "source_alias_names",
            "session",
            "partition_key",
            "partition_date",
            "source_is_api",
            "api_user_teams",
            "api_allow_consumer_teams",
            "api_allow_global_consumers",
            "callback_sink",
            "kwargs",
        ),
    ),
    Seam(
        "airflow.sdk.definitions.context._AIRFLOW_PARSING_CONTEXT_DAG_ID",
        "relied-on",
        (SCALE_LOADER,),
        "Private: the environment variable get_parsing_context reads; the loader sets it by name to parse one DAG.",
    ),
)


@dataclass(frozen=True)
class SqlColumns:
    """Columns of one Airflow table that our SQL text names (the ORM does not check text)."""

    table: str
    columns: tuple[str, ...]
    ours: tuple[str, ...]


SQL_COLUMNS: tuple[SqlColumns, ...] = (
    SqlColumns(
        "task_instance",
        (
            "id",
            "state",
            "try_number",
            "queued_by_job_id",
            "last_heartbeat_at",
            "dag_id",
            "run_id",
            "start_date",
        ),
        (CLAIMS, NOTIFY, COLLECT),
    ),
    SqlColumns("job", ("id", "state", "latest_heartbeat", "job_type", "hostname"), (CLAIMS,)),
    SqlColumns(
        "dag_run",
        ("dag_id", "run_id", "state", "queued_at", "start_date", "end_date"),
        (CLAIMS, NOTIFY, COLLECT, SCALE),
    ),
    SqlColumns("asset_dag_run_queue", ("target_dag_id",), (NOTIFY, SCALE_CLONE)),
    SqlColumns("trigger", ("id",), (NOTIFY,)),
    SqlColumns("dag", ("dag_id",), (SCALE_CLONE,)),
    SqlColumns("dag_tag", ("dag_id",), (SCALE_CLONE,)),
    SqlColumns("dag_version", ("id", "dag_id"), (SCALE_CLONE,)),
    SqlColumns(
        "serialized_dag",
        ("id", "dag_id", "dag_version_id", "data", "data_compressed", "dag_hash"),
        (SCALE_CLONE,),
    ),
    SqlColumns("dag_code", ("id", "dag_id", "dag_version_id"), (SCALE_CLONE,)),
)

# Our kestra_workload columns that hold a copy of an Airflow column's value: the Airflow column
# must exist, with the same kind of type, and fit in ours.
MIRRORED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kestra_workload.ti_id", "task_instance.id"),
    ("kestra_workload.try_number", "task_instance.try_number"),
    ("kestra_workload.dag_id", "task_instance.dag_id"),
    ("kestra_workload.task_id", "task_instance.task_id"),
    ("kestra_workload.run_id", "task_instance.run_id"),
    ("kestra_workload.map_index", "task_instance.map_index"),
    ("kestra_workload.queue", "task_instance.queue"),
    ("kestra_workload.priority_weight", "task_instance.priority_weight"),
    ("kestra_workload.job_id", "job.id"),
)

# State values our SQL text compares with, by the enum that defines them.
SQL_STATES: dict[str, tuple[str, ...]] = {
    "airflow.utils.state.TaskInstanceState": (
        "queued",
        "running",
        "success",
        "failed",
        "skipped",
        "upstream_failed",
        "up_for_retry",
        "up_for_reschedule",
        "scheduled",
        "removed",
        "deferred",
    ),
    "airflow.utils.state.DagRunState": ("queued", "running", "success", "failed"),
    "airflow.jobs.job.JobState": ("running",),
}


# -- resolving and fingerprinting -------------------------------------------------------------
class SeamMissing(LookupError):
    """A seam's qualified name does not resolve in the installed Airflow."""


def resolve(name: str) -> Any:
    """The object ``name`` names: the longest importable module prefix, then ``getattr``."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        for i, attr in enumerate(parts[cut:], start=cut):
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise SeamMissing(f"{'.'.join(parts[:i])} has no attribute {attr!r}") from None
        return obj
    raise SeamMissing(f"no module of {name} can be imported")


PATCHED_WITHOUT_WRAPPED = "patched in place by our code without keeping the stock object as __wrapped__"


def stock_value(name: str) -> Any:
    """:func:`resolve`, looking through a patch of ours to the stock object it keeps as ``__wrapped__``."""
    obj = resolve(name)
    return inspect.unwrap(obj) if is_ours(obj) else obj


def owner_and_attribute(name: str) -> tuple[Any, str]:
    owner_name, _, attribute = name.rpartition(".")
    return resolve(owner_name), attribute


def declares_attribute(cls: type, attribute: str) -> bool:
    """Whether ``cls`` (or a base) declares ``attribute`` as an attrs/dataclass field, an
    annotation, or assigns ``self.<attribute>`` in its source."""
    import attrs

    if attrs.has(cls) and attribute in {f.name for f in attrs.fields(cls)}:
        return True
    for klass in cls.__mro__:
        if attribute in getattr(klass, "__annotations__", {}):
            return True
        if klass.__module__ in ("builtins", "typing"):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{attribute} =" in source or f"self.{attribute}:" in source:
            return True
    return False


def _stock_function(obj: Any) -> Any:
    """The function (or class) whose source is the stock code: properties and cached properties
    give their getter, class and static methods their function, and wrappers (``__wrapped__``,
    which our patches keep) the function they wrap."""
    if isinstance(obj, property):
        obj = obj.fget
    elif isinstance(obj, functools.cached_property):
        obj = obj.func
    elif isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if inspect.ismethod(obj):
        obj = obj.__func__
    return inspect.unwrap(obj)


def stock_object(seam: Seam) -> Any:
    """What the fingerprint of ``seam`` is taken of, found without running descriptors."""
    owner, attribute = owner_and_attribute(seam.name)
    if inspect.isclass(owner):
        for klass in owner.__mro__:
            if attribute in vars(klass):
                return _stock_function(vars(klass)[attribute])
    return _stock_function(getattr(owner, attribute))


def normalise(source: str) -> str:
    """``source`` dedented, without trailing whitespace on its lines or blank lines around it."""
    lines = textwrap.dedent(source).splitlines()
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def fingerprint_of(source: str) -> str:
    return hashlib.sha256(normalise(source).encode("utf-8")).hexdigest()


def source_fingerprint(obj: Any) -> str:
    """sha256 of ``obj``'s source (``inspect.getsource``), normalised by :func:`normalise`."""
    return fingerprint_of(inspect.getsource(obj))


def is_ours(obj: Any) -> bool:
    return str(getattr(obj, "__module__", "") or "").startswith("airflow_kestra_provider")


def wants_fingerprint(seam: Seam, obj: Any) -> bool:
    """Every seam but ``call`` on an Airflow function or class carries a fingerprint."""
    if seam.kind == "call" or seam.declared:
        return False
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    return is_ours(obj) or str(getattr(obj, "__module__", "")).startswith("airflow")


def registry_line(text: str) -> int:
    """The line of this module on which ``text`` first appears (0 when it does not)."""
    for number, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    return 0


def _where(obj: Any) -> str:
    try:
        path = inspect.getsourcefile(obj) or "?"
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return "?"
    marker = "site-packages/"
    path = path.split(marker, 1)[-1] if marker in path else path
    return f"{path}:{line}"


def airflow_version() -> str:
    import airflow

    return str(airflow.__version__)


def port_checklist(seam: Seam, what: str, obj: Any = None) -> str:
    """The message of a failed check: what changed, where it is recorded, what to do."""
    recorded_at = (
        registry_line(seam.fingerprint or "") if seam.fingerprint else registry_line(f'"{seam.name}"')
    )
    stock_at = _where(obj) if obj is not None else "?"
    return "\n".join(
        (
            f"{seam.name} ({seam.kind}): {what} in Airflow {airflow_version()}.",
            f"  recorded at: {REGISTRY}:{recorded_at}",
            f"  stock code:  {stock_at}",
            f"  our code to review: {', '.join(seam.ours)}",
            f"  what we rely on: {seam.note}",
            "  port checklist:",
            f"    1. read the new stock source of {seam.name} ({stock_at}) and its git history",
            f"    2. compare it with our override/copy in {', '.join(seam.ours)}",
            "    3. port the change to our code (or drop ours where Airflow now does the same) and run the unit tests of those files",
            f"    4. update the record's params/fingerprint: {CLI} prints the current ones to paste",
        )
    )


def check_fingerprint(seam: Seam, obj: Any) -> str | None:
    """None when ``obj``'s source has ``seam``'s recorded fingerprint, else the port checklist."""
    if is_ours(obj):
        return port_checklist(seam, PATCHED_WITHOUT_WRAPPED, obj)
    try:
        current = source_fingerprint(obj)
    except (OSError, TypeError) as err:
        return port_checklist(seam, f"its source cannot be read ({err})", obj)
    if seam.fingerprint is None:
        return port_checklist(seam, f"no fingerprint recorded (current: {current})", obj)
    if current != seam.fingerprint:
        return port_checklist(
            seam, f"the stock source changed (fingerprint {current}, recorded {seam.fingerprint})", obj
        )
    return None


def parameter_names(obj: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(obj).parameters)


def check_params(seam: Seam, obj: Any) -> str | None:
    """None when ``obj``'s parameters are the recorded ones, else the port checklist."""
    try:
        current = parameter_names(obj)
    except (TypeError, ValueError) as err:
        return port_checklist(seam, f"its signature cannot be read ({err})", obj)
    if seam.params is None:
        return port_checklist(seam, f"no parameters recorded (current: {current})", obj)
    if current != seam.params:
        return port_checklist(seam, f"the parameters changed to {current} (recorded {seam.params})", obj)
    return None


def check_seam(seam: Seam) -> list[str]:
    """Every failed check of one seam (empty when it holds)."""
    try:
        if seam.declared:
            owner, attribute = owner_and_attribute(seam.name)
            if not inspect.isclass(owner) or not declares_attribute(owner, attribute):
                return [port_checklist(seam, "the attribute is no longer declared", owner)]
            return []
        obj = stock_value(seam.name)
    except SeamMissing as err:
        return [port_checklist(seam, f"it no longer resolves ({err})")]
    if is_ours(obj):
        return [port_checklist(seam, PATCHED_WITHOUT_WRAPPED, obj)]
    failures = []
    if (callable(obj) and seam.check_signature) or seam.params is not None:
        failure = check_params(seam, obj)
        if failure:
            failures.append(failure)
    stock = stock_object(seam)
    if seam.fingerprint is not None or wants_fingerprint(seam, stock):
        failure = check_fingerprint(seam, stock)
        if failure:
            failures.append(failure)
    return failures


def current_records() -> list[tuple[Seam, tuple[str, ...] | None, str | None]]:
    """(seam, current params, current fingerprint) of every seam that resolves."""
    out = []
    for seam in SEAMS:
        if seam.declared:
            continue
        try:
            obj = stock_value(seam.name)
            stock = stock_object(seam)
        except SeamMissing:
            continue
        params = None
        if callable(obj) and seam.check_signature:
            try:
                params = parameter_names(obj)
            except (TypeError, ValueError):
                params = None
        fingerprint = None
        if (seam.fingerprint is not None or wants_fingerprint(seam, stock)) and not is_ours(stock):
            try:
                fingerprint = source_fingerprint(stock)
            except (OSError, TypeError):
                fingerprint = None
        out.append((seam, params, fingerprint))
    return out


def print_fingerprints() -> None:
    print(f"# Airflow {airflow_version()}: lines to paste into the records of {REGISTRY}")
    for seam, params, fingerprint in current_records():
        if params is None and fingerprint is None:
            continue
        changed = (params is not None and params != seam.params) or (
            fingerprint is not None and fingerprint != seam.fingerprint
        )
        line = registry_line(seam.fingerprint) if seam.fingerprint else registry_line(f'"{seam.name}"')
        print(f"# {seam.name}  (line {line}){'  CHANGED' if changed else ''}")
        if params is not None:
            print(f"        params={params!r},")
        if fingerprint is not None:
            print(f'        fingerprint="{fingerprint}",')


def main(argv: list[str]) -> int:
    if argv == ["--fingerprints"]:
        print_fingerprints()
        return 0
    if argv == ["--check"]:
        failures = [failure for seam in SEAMS for failure in check_seam(seam)]
        print("\n\n".join(failures) if failures else f"all {len(SEAMS)} seams hold")
        return 1 if failures else 0
    print("usage: python -m airflow_kestra_provider.airflow_seams --fingerprints | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
