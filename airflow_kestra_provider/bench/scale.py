"""``bench scale``: N synthetic ``@daily`` DAGs, all due; how long until every run exists and is done.

Per stack: fresh database, migrate, load the N DAGs with :mod:`scale_loader` (dag-processor
code path, one parse), then start ONLY the scheduler and poll the database (one query per poll)
until all N runs exist and have finished. The DAGs hold one EmptyOperator, which the scheduler
marks done itself, so the figures are pure scheduler work: run creation and run completion.
Per-loop timings come from the scheduler's own "Ran scheduling loop in X ms" debug line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
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
           MAX(end_date) AS last_finished
    FROM dag_run
    WHERE dag_id LIKE :pattern ESCAPE '\\'
    """
)


def scale(plan: StackPlan, count: int, timeout: float, out: Path | None, log: Log) -> dict[str, Any]:
    import tempfile

    work_dir = Path(plan.work_dir or tempfile.mkdtemp(prefix="kestra-bench-scale-"))
    dags = work_dir / "scale_dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / SCALE_FILE).write_text(scale_file_source(count))
    database = DatabaseServer(work_dir, plan.postgres_url)
    database.start()
    log(f"work dir {work_dir}")
    results = []
    try:
        for name in plan.stacks:
            results.append(_one_stack(plan, name, count, timeout, work_dir, dags, database, log))
    finally:
        database.stop()
    report = {
        "kind": "scale",
        "dags": count,
        "timeout": timeout,
        "machine": machine_info(),
        "results": results,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (out / "scale.md").write_text(f"# bench scale: {count} @daily DAGs\n\n" + scale_table(results))
    return report


def _one_stack(
    plan: StackPlan,
    name: str,
    count: int,
    timeout: float,
    work_dir: Path,
    dags: Path,
    database: DatabaseServer,
    log: Log,
) -> dict[str, Any]:
    kind = flavour(name)
    db_name = f"kestra_bench_scale_{name}"
    config = StackConfig(
        home=work_dir / f"scale_{name}",
        sql_alchemy_conn=database.create(db_name),
        dags_folder=dags,
        port=free_port(),
        executor=kind.executor,
        extra={**plan.settings, "AIRFLOW__LOGGING__NAMESPACE_LEVELS": SCHEDULER_DEBUG},
    )
    stack = AirflowStack(config, scheduler_args=kind.scheduler_args)
    engine = make_engine(config.sql_alchemy_conn)
    try:
        log(f"{name}: migrating a fresh database ...")
        stack.migrate()
        log(f"{name}: loading {count} DAGs ...")
        load_seconds = _load(stack, dags, count)
        log(
            f"{name}: loaded in {load_seconds:.1f} s; starting `airflow {' '.join(kind.scheduler_args)}` alone"
        )
        started_at = datetime.now(timezone.utc)
        started = time.monotonic()
        stack.supervisor.start("scheduler", airflow_argv(*kind.scheduler_args))
        bar = ProgressBar(f"  {name} scale", quiet=plan.quiet)
        created = finished = 0
        last_created = last_finished = None
        while time.monotonic() - started < timeout:
            time.sleep(POLL_INTERVAL)
            stack.raise_if_dead()
            with engine.connect() as conn:
                row = conn.execute(_PROGRESS_QUERY, {"pattern": SCALE_PREFIX.replace("_", "\\_") + "%"}).one()
            created, finished, last_created, last_finished = row
            bar.update(int(finished), count, f"finished, {created} created")
            if finished >= count:
                break
        bar.close(f"{created}/{count} runs created, {finished}/{count} finished")
    finally:
        stack.stop()
        engine.dispose()
        database.drop(db_name)
    loops = [float(m.group(1)) / 1000 for m in LOOP_LINE.finditer(_read_log(stack, "scheduler"))]
    loop_summary = summarize(loops)
    all_created = _since(started_at, last_created) if created >= count else None
    return {
        "stack": name,
        "dags": count,
        "load_seconds": load_seconds,
        "created": int(created),
        "finished": int(finished),
        "all_created_seconds": all_created,
        "all_finished_seconds": _since(started_at, last_finished) if finished >= count else None,
        "runs_created_per_second": count / all_created if all_created else None,
        "loops": None if loop_summary is None else loop_summary.to_dict(),
    }


def _since(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return (end - start).total_seconds()


def _load(stack: AirflowStack, dags: Path, count: int) -> float:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_kestra_provider.bench.scale_loader", str(dags), str(count)],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"loading the DAGs failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["load_seconds"])


def _read_log(stack: AirflowStack, name: str) -> str:
    path = stack.supervisor.log_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


SCALE_HEADERS = (
    "stack",
    "DAGs",
    "load",
    "all runs created",
    "runs created/s",
    "all runs finished",
    "loop p50",
    "loop p99",
    "loop max",
)


def scale_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        loops = r.get("loops") or {}
        rate = r.get("runs_created_per_second")
        rows.append(
            [
                r["stack"],
                str(r["dags"]),
                fmt_seconds(r["load_seconds"]),
                fmt_seconds(r["all_created_seconds"])
                if r["all_created_seconds"] is not None
                else f"not within timeout ({r['created']} created)",
                "-" if rate is None else f"{rate:.1f}",
                fmt_seconds(r["all_finished_seconds"])
                if r["all_finished_seconds"] is not None
                else f"not within timeout ({r['finished']} finished)",
                fmt_seconds(loops.get("p50")),
                fmt_seconds(loops.get("p99")),
                fmt_seconds(loops.get("max")),
            ]
        )
    return markdown(SCALE_HEADERS, rows)
