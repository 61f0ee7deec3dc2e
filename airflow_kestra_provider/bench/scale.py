"""``bench scale``: N synthetic DAGs; how long until every due run exists and is done, or how long a loop takes.

Per size and stack: fresh database, migrate, load the N DAGs with :mod:`scale_loader` (one parse,
the dag-processor's own write for the template, SQL clone for the rest), then start ONLY the
scheduler and poll the database (one query per poll, progress kept as a timeline).

* ``daily``: the N DAGs are paused while the scheduler starts; once it logs its first loop they
  are unpaused in one statement, so all N become due at once while it runs (as at midnight for
  ``@daily`` DAGs), and the clock starts then. Its start-up time is reported apart
  (``startup_seconds``). Wait until all N runs exist and have finished, or until ``timeout``
  (then report how many were created and the rate). The DAGs hold one EmptyOperator,
  which the scheduler marks done itself, so the figures are pure scheduler work.
* ``assets``: every DAG waits on ``shared & own`` with only ``shared`` queued; run the scheduler
  for ``duration`` seconds and report its per-loop times (no run may be created).

Per-loop timings come from the "Ran scheduling loop in X ms" debug line that Airflow's
``_run_scheduler_loop`` logs; our runner keeps that loop, so the line times the same span
(scheduling, executor heartbeat and events, timers; not the idle wait) for both stacks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import text

from airflow_kestra_provider.bench.collect import make_engine
from airflow_kestra_provider.bench.compare import Log, StackPlan, machine_info
from airflow_kestra_provider.bench.progress import ProgressBar
from airflow_kestra_provider.bench.scale_dags import SCALE_FILE, SCALE_PREFIX, scale_file_source
from airflow_kestra_provider.bench.stacks import DatabaseServer, flavour
from airflow_kestra_provider.bench.stats import summarize
from airflow_kestra_provider.bench.table import fmt_seconds, markdown
from airflow_kestra_provider.stack.environment import StackConfig, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from airflow_kestra_provider.stack.stack import AirflowStack

POLL_INTERVAL = 2.0
LOOP_LINE = re.compile(r"Ran scheduling loop in ([0-9.]+) ms")
# The stock runner logs its loop time at DEBUG; raise only that logger (and ours) to DEBUG.
SCHEDULER_DEBUG = "airflow.jobs.scheduler_job_runner=DEBUG,airflow_kestra_provider.scheduler=DEBUG"

_PROGRESS_QUERY = text(
    """
    SELECT COUNT(*) AS created,
           COALESCE(SUM(CASE WHEN state IN ('success', 'failed') THEN 1 ELSE 0 END), 0) AS finished,
           MAX(queued_at) AS last_created,
           MIN(queued_at) AS first_created,
           MAX(end_date) AS last_finished
    FROM dag_run
    WHERE dag_id LIKE :pattern ESCAPE '\\'
    """
)


def scale(
    plan: StackPlan,
    counts: Sequence[int],
    timeout: float,
    out: Path | None,
    log: Log,
    schedule: str = "daily",
    duration: float = 60.0,
) -> dict[str, Any]:
    """Each size in ``counts``, each stack in ``plan.stacks``: fresh database, load, scheduler alone."""
    import tempfile

    work_dir = Path(plan.work_dir or tempfile.mkdtemp(prefix="kestra-bench-scale-"))
    database = DatabaseServer(work_dir, plan.postgres_url)
    database.start()
    log(f"work dir {work_dir}")
    results = []
    try:
        for count in counts:
            dags = work_dir / f"scale_dags_{schedule}_{count}"
            dags.mkdir(parents=True, exist_ok=True)
            (dags / SCALE_FILE).write_text(scale_file_source(count, schedule))
            for name in plan.stacks:
                run = ScaleRun(name, count, schedule, timeout, duration)
                results.append(_one_stack(plan, run, work_dir, dags, database, log))
                if out is not None:  # keep what is done if a later stack fails or is interrupted
                    _write(out, counts, schedule, timeout, results)
    finally:
        database.stop()
    report = _report(counts, schedule, timeout, results)
    if out is not None:
        _write(out, counts, schedule, timeout, results)
    return report


@dataclass(frozen=True)
class ScaleRun:
    stack: str
    dags: int
    schedule: str
    timeout: float
    duration: float

    @property
    def method(self) -> str:
        """Asset-scheduled DAGs own asset rows: written through the processor's function, not cloned."""
        return "processor" if self.schedule == "assets" else "clone"


def _report(
    counts: Sequence[int], schedule: str, timeout: float, results: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "kind": "scale",
        "schedule": schedule,
        "dags": list(counts),
        "timeout": timeout,
        "machine": machine_info(),
        "results": results,
    }


def _write(
    out: Path, counts: Sequence[int], schedule: str, timeout: float, results: list[dict[str, Any]]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = _report(counts, schedule, timeout, results)
    (out / "scale.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    sizes = ", ".join(str(c) for c in counts)
    title = (
        f"# bench scale: {sizes} {'asset-scheduled (pending)' if schedule == 'assets' else '@daily'} DAGs\n\n"
    )
    (out / "scale.md").write_text(title + scale_table(results))


def _one_stack(
    plan: StackPlan, run: ScaleRun, work_dir: Path, dags: Path, database: DatabaseServer, log: Log
) -> dict[str, Any]:
    name, count = run.stack, run.dags
    kind = flavour(name)
    db_name = f"kestra_bench_scale_{name}"
    config = StackConfig(
        home=work_dir / f"scale_{run.schedule}_{count}_{name}",
        sql_alchemy_conn=database.create(db_name),
        dags_folder=dags,
        port=free_port(),
        executor=kind.executor,
        extra={**plan.settings, "AIRFLOW__LOGGING__NAMESPACE_LEVELS": SCHEDULER_DEBUG},
    )
    stack = AirflowStack(config, scheduler_args=kind.scheduler_args)
    engine = make_engine(config.sql_alchemy_conn)
    timeline: list[tuple[float, int, int]] = []
    created = finished = 0
    last_created = last_finished = first_created = None
    scheduled_seconds = 0.0
    startup_seconds = 0.0
    daily = run.schedule != "assets"
    try:
        log(f"{name}: migrating a fresh database ...")
        stack.migrate()
        log(f"{name}: loading {count} {run.schedule} DAGs ({run.method}) ...")
        loaded = load_dags(stack, dags, count, run.method, run.schedule)
        log(
            f"{name}: loaded in {loaded['load_seconds']:.1f} s; starting `airflow {' '.join(kind.scheduler_args)}` alone"
        )
        pattern = SCALE_PREFIX.replace("_", "\\_") + "%"
        if daily:  # paused until the scheduler is up: they become due at once, while it runs
            _set_paused(engine, pattern, True)
        stack.supervisor.start("scheduler", airflow_argv(*kind.scheduler_args))
        if daily:
            startup_seconds = _wait_first_loop(stack, run.timeout)
            log(f"{name}: scheduler looping {startup_seconds:.1f} s after start; unpausing the {count} DAGs")
        started_at = datetime.now(timezone.utc)  # read before the unpause: no run can predate it
        started = time.monotonic()
        if daily:
            _set_paused(engine, pattern, False)
        bar = ProgressBar(f"  {name} scale {count}", quiet=plan.quiet)
        # Asset DAGs never become due: time the loop for ``duration`` s from the first loop logged.
        first_loop: float | None = None
        while True:
            now = time.monotonic()
            if not daily and first_loop is None and LOOP_LINE.search(_read_log(stack, "scheduler")):
                first_loop = now
            if first_loop is None and now - started >= run.timeout:
                break
            if first_loop is not None and now - first_loop >= run.duration:
                break
            time.sleep(POLL_INTERVAL)
            stack.raise_if_dead()
            with engine.connect() as conn:
                created, finished, last_created, first_created, last_finished = conn.execute(
                    _PROGRESS_QUERY, {"pattern": pattern}
                ).one()
            timeline.append((round(time.monotonic() - started, 1), int(created), int(finished)))
            if not daily:
                looped = 0 if first_loop is None else int(time.monotonic() - first_loop)
                bar.update(looped, int(run.duration), f"s of loops, {created} runs created")
                continue
            bar.update(int(finished), count, f"finished, {created} created")
            if finished >= count:
                break
        scheduled_seconds = time.monotonic() - started
        bar.close(f"{created}/{count} runs created, {finished}/{count} finished in {scheduled_seconds:.0f} s")
    finally:
        stack.stop()
        engine.dispose()
        database.drop(db_name)
    scheduler_log = _read_log(stack, "scheduler")
    loops = summarize(loop_times(scheduler_log))
    created_seconds = _since(started_at, last_created)
    return {
        "stack": name,
        "dags": count,
        "schedule": run.schedule,
        "load_seconds": loaded["load_seconds"],
        "load": loaded,
        "scheduled_seconds": round(scheduled_seconds, 1),
        "startup_seconds": round(startup_seconds, 1) if daily else None,
        "created": int(created),
        "finished": int(finished),
        "all_created_seconds": created_seconds if created >= count else None,
        "all_finished_seconds": _since(started_at, last_finished) if finished >= count else None,
        "last_created_seconds": created_seconds,
        "first_created_seconds": _since(started_at, first_created),
        "runs_created_per_second": creation_rate(int(created), created_seconds),
        "loops": None if loops is None else loops.to_dict(),
        "timeline": timeline,
        "scheduler_log": str(stack.supervisor.log_dir / "scheduler.log"),
    }


def _set_paused(engine: Any, pattern: str, paused: bool) -> None:
    """Pause or unpause every scale DAG in one statement (one transaction)."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dag SET is_paused = :paused WHERE dag_id LIKE :pattern ESCAPE '\\'"),
            {"paused": paused, "pattern": pattern},
        )


def _wait_first_loop(stack: AirflowStack, timeout: float) -> float:
    """Seconds from now until the scheduler logs its first loop (it has started and is polling)."""
    started = time.monotonic()
    while not LOOP_LINE.search(_read_log(stack, "scheduler")):
        stack.raise_if_dead()
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the scheduler logged no loop within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def loop_times(scheduler_log: str) -> list[float]:
    """Seconds per scheduling loop, from the runner's own debug line (stock and ours log the same)."""
    return [float(m.group(1)) / 1000 for m in LOOP_LINE.finditer(scheduler_log)]


def creation_rate(created: int, last_created_seconds: float | None) -> float | None:
    """Runs created per second, from the moment the DAGs became due to the last run created."""
    if not created or not last_created_seconds or last_created_seconds <= 0:
        return None
    return created / last_created_seconds


def _since(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return (end - start).total_seconds()


def load_dags(stack: AirflowStack, dags: Path, count: int, method: str, schedule: str) -> dict[str, Any]:
    """Write ``count`` scale DAGs of ``dags`` into ``stack``'s (migrated) database with :mod:`scale_loader`.

    The loader runs as a subprocess with the stack's environment, so it writes to that stack's
    database with that stack's config. ``method`` is the loader's ``--method`` (``parse``, ``clone``
    or ``processor``), ``schedule`` its ``--schedule`` (``daily`` or ``assets``). Returns the
    loader's JSON summary (``load_seconds``, ``method``, ...); raises ``RuntimeError`` with the
    tail of its output if it fails.
    """
    argv = [str(dags), str(count), "--method", method, "--schedule", schedule]
    result = subprocess.run(
        [sys.executable, "-m", "airflow_kestra_provider.bench.scale_loader", *argv],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"loading the DAGs failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def _read_log(stack: AirflowStack, name: str) -> str:
    path = stack.supervisor.log_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


SCALE_HEADERS = (
    "stack",
    "DAGs",
    "load",
    "start-up",
    "all runs created",
    "runs created/s",
    "vs stock",
    "all runs finished",
    "loops",
    "loop p50",
    "loop p99",
    "loop max",
)


def scale_rows(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per (stack, size): load and start-up time, time until every due run was created
    (daily) or the runs created while conditions were pending (assets), runs created per second,
    against stock, time until every run finished, and the scheduler loops' count and durations.
    "vs stock" is the creation rate (daily) or the loop p50 (assets) of this row against the
    stock row of the same size and schedule: how many times better."""
    rows = []
    for r in results:
        loops = r.get("loops") or {}
        rate = r.get("runs_created_per_second")
        assets = r.get("schedule") == "assets"
        if assets:
            created = f"{r['created']} (asset conditions pending, {r.get('scheduled_seconds', 0):.0f} s)"
            done = "-"
        else:
            created = (
                fmt_seconds(r["all_created_seconds"])
                if r["all_created_seconds"] is not None
                else f"created {r['created']} of {r['dags']} in {r.get('scheduled_seconds', 0):.0f} s"
            )
            done = (
                fmt_seconds(r["all_finished_seconds"])
                if r["all_finished_seconds"] is not None
                else f"finished {r['finished']} of {r['dags']}"
            )
        rows.append(
            {
                "stack": r["stack"],
                "dags": str(r["dags"]),
                "load": fmt_seconds(r["load_seconds"]),
                "startup": fmt_seconds(r.get("startup_seconds")),
                "all_runs_created": created,
                "runs_created_per_s": "-" if rate is None else f"{rate:.1f}",
                "vs_stock": _versus_stock(r, results),
                "all_runs_finished": done,
                "loops": str(loops.get("count", 0)),
                "loop_p50": fmt_seconds(loops.get("p50")),
                "loop_p99": fmt_seconds(loops.get("p99")),
                "loop_max": fmt_seconds(loops.get("max")),
            }
        )
    return rows


def scale_table(results: list[dict[str, Any]]) -> str:
    """One row per (size, stack), the cells of :func:`scale_rows`."""
    return markdown(SCALE_HEADERS, [list(row.values()) for row in scale_rows(results)])


def _versus_stock(row: dict[str, Any], results: list[dict[str, Any]]) -> str:
    stock = next(
        (
            r
            for r in results
            if r["stack"] == "stock" and r["dags"] == row["dags"] and r.get("schedule") == row.get("schedule")
        ),
        None,
    )
    if stock is None or stock is row:
        return "-"
    if row.get("schedule") == "assets":
        mine, theirs = (row.get("loops") or {}).get("p50"), (stock.get("loops") or {}).get("p50")
        return f"{theirs / mine:.1f}x" if mine and theirs else "-"
    mine, theirs = row.get("runs_created_per_second"), stock.get("runs_created_per_second")
    return f"{mine / theirs:.1f}x" if mine and theirs else "-"
