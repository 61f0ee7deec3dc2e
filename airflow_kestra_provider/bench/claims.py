"""``airflow kestra bench claims``: how many task instances per second the poll statement claims.

The statement alone (:class:`~airflow_kestra_provider.queue.claims.PollConnection`: one
statement per poll on a kept connection in autocommit, as a worker polls), with no scheduler, no api-server and no task: a fresh
database with Airflow's schema (``airflow db migrate``) and ours, ``--rows`` queued task instances
with one ``kestra_workload`` row each (the workload text as large as a real ``ExecuteTask``), then
for every case of poll size x pollers x round-trip delay: fresh pending rows, ``pollers`` worker
registrations, ``pollers`` processes polling at once for ``--duration`` seconds (or until the
queue is empty). Reported: task instances claimed per second over all pollers, and the poll
statement's p50 and p99 as one poller sees it.

A delay above 0 puts a :class:`~.delay_proxy.DelayProxy` between the pollers and PostgreSQL: a
worker on another host pays that round trip on every poll, and a larger poll size spreads it over
more task instances.

The synthetic task instances are inserted with ``session_replication_role = replica`` (their dag
runs do not exist; foreign keys are not checked for them), which needs a superuser: the embedded
PostgreSQL's, or one given with ``--postgres-url``.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from airflow_kestra_provider.bench.delay_proxy import DelayProxy, Upstream
from airflow_kestra_provider.bench.progress import ProgressBar
from airflow_kestra_provider.bench.stacks import DatabaseServer
from airflow_kestra_provider.bench.target import BenchUsageError
from airflow_kestra_provider.queue import claims

Log = Callable[[str], None]

DATABASE = "kestra_bench_claims"
DAG_ID = "kestra_bench_claims"
WORKLOAD_BYTES = 1500  # about the size of a real ExecuteTask workload, token included


@dataclass(frozen=True)
class ClaimPlan:
    poll_sizes: Sequence[int]
    pollers: Sequence[int]
    delays_ms: Sequence[float]
    rows: int
    duration: float
    work_dir: Path | None = None
    postgres_url: str | None = None


@dataclass(frozen=True)
class Case:
    poll_size: int
    pollers: int
    delay_ms: float


def cases(plan: ClaimPlan) -> list[Case]:
    return [
        Case(size, pollers, delay)
        for delay in plan.delays_ms
        for pollers in plan.pollers
        for size in plan.poll_sizes
    ]


# -- the database ------------------------------------------------------------------------------
def migrate(url: str, work_dir: Path) -> None:
    """Airflow's schema and ours on ``url`` (``airflow db migrate``, as a deployment gets them)."""
    from airflow_kestra_provider.stack.environment import StackConfig, stack_environment
    from airflow_kestra_provider.stack.processes import run_airflow

    config = StackConfig(home=work_dir / "home", sql_alchemy_conn=url, dags_folder=work_dir)
    config.home.mkdir(parents=True, exist_ok=True)
    run_airflow(stack_environment(config), "db", "migrate")


_QUEUED_TIS_SQL = text(
    """
    INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, pool,
                               pool_slots, queue, priority_weight, state)
    SELECT gen_random_uuid(), 't', :dag_id, 'bench_' || i, -1, 1, 0, 'default_pool', 1, 'default', 1,
           'queued'
    FROM generate_series(1, :rows) AS i
    """
)

_PENDING_SQL = text(
    """
    INSERT INTO kestra_workload (id, ti_id, try_number, dag_id, task_id, run_id, map_index, queue,
                                 priority_weight, job_id, workload, created_at)
    SELECT gen_random_uuid(), ti.id, 1, ti.dag_id, ti.task_id, ti.run_id, -1, 'default', 1, NULL,
           :workload, clock_timestamp()
    FROM task_instance AS ti WHERE ti.dag_id = :dag_id
    """
)


def add_queued_task_instances(url: str, rows: int) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            role = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
            if not role:
                raise BenchUsageError(
                    "bench claims inserts task instances without their dag runs and needs a PostgreSQL "
                    "superuser: use the embedded server (no --postgres-url) or a superuser's URL"
                )
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(_QUEUED_TIS_SQL, {"dag_id": DAG_ID, "rows": rows})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE task_instance"))
    finally:
        engine.dispose()


def reset_queue(url: str, worker_ids: Sequence[str]) -> None:
    """Every task instance pending again (one workload row each) and ``worker_ids`` registered."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE kestra_workload, kestra_worker"))
            conn.execute(_PENDING_SQL, {"dag_id": DAG_ID, "workload": "x" * WORKLOAD_BYTES})
        with Session(engine) as session, session.begin():
            for worker_id in worker_ids:
                claims.register_worker(
                    session,
                    worker_id=worker_id,
                    name=worker_id,
                    hostname="bench",
                    pid=os.getpid(),
                    embedded=False,
                    concurrency=1_000_000,
                    queues=(),
                    version="bench",
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE kestra_workload"))
    finally:
        engine.dispose()


# -- the pollers -------------------------------------------------------------------------------
def _poller(url: str, worker_id: str, poll_size: int, start: Any, deadline_s: float, out: Connection) -> None:
    """One process: poll until the queue is empty or the deadline passed, on a
    :class:`~airflow_kestra_provider.queue.claims.PollConnection` as a worker polls; send its
    figures."""
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)
    poller = claims.PollConnection(engine)
    durations: list[float] = []
    claimed = 0
    try:
        poller.claim(worker_id="nobody", limit=1, queues=())  # connected before the start
        start.wait()
        began = time.monotonic()
        deadline = began + deadline_s
        ended = began
        emptied = False
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            rows = poller.claim(worker_id=worker_id, limit=poll_size, queues=())
            ended = time.monotonic()
            durations.append(ended - t0)
            claimed += len(rows)
            if not rows:
                emptied = True
                break
        out.send(
            {"claimed": claimed, "began": began, "ended": ended, "durations": durations, "emptied": emptied}
        )
    except Exception as err:
        out.send({"error": f"{type(err).__name__}: {err}"})
    finally:
        out.close()
        poller.close()
        engine.dispose()


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_case(url: str, case: Case, duration: float) -> dict[str, Any]:
    """``case.pollers`` processes polling ``url`` at once; their summed figures."""
    worker_ids = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(case.pollers)]
    reset_queue(url, worker_ids)
    context = multiprocessing.get_context("spawn")  # no inherited engine or lock
    start = context.Event()
    pipes, processes = [], []
    for worker_id in worker_ids:
        parent, child = context.Pipe(duplex=False)
        process = context.Process(
            target=_poller, args=(url, worker_id, case.poll_size, start, duration, child), daemon=True
        )
        process.start()
        child.close()
        pipes.append(parent)
        processes.append(process)
    time.sleep(0.5)
    start.set()
    figures = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join(30)
    errors = [f["error"] for f in figures if "error" in f]
    if errors:
        raise RuntimeError(f"a poller failed: {errors[0]}")
    claimed = sum(f["claimed"] for f in figures)
    seconds = max(f["ended"] for f in figures) - min(f["began"] for f in figures)
    durations = sorted(d for f in figures for d in f["durations"])
    return {
        "poll_size": case.poll_size,
        "pollers": case.pollers,
        "delay_ms": case.delay_ms,
        "claimed": claimed,
        "seconds": round(seconds, 3),
        "claims_per_second": round(claimed / seconds, 1) if seconds > 0 else None,
        "polls": len(durations),
        "poll_p50_ms": _ms(_percentile(durations, 0.5)),
        "poll_p99_ms": _ms(_percentile(durations, 0.99)),
        "emptied": any(f["emptied"] for f in figures),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def upstream_of(url: str) -> Upstream:
    """Where PostgreSQL listens for ``url``: its unix socket (``?host=/dir``) or its TCP address."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    port = parsed.port or 5432
    if str(host).startswith("/"):
        return Upstream(unix_path=f"{host}/.s.PGSQL.{port}")
    return Upstream(host=str(host), port=port)


def through(url: str, port: int) -> str:
    """``url`` with its connection made to ``127.0.0.1:port`` (the proxy) instead."""
    parsed = make_url(url)
    query = {k: v for k, v in parsed.query.items() if k != "host"}
    return parsed.set(host="127.0.0.1", port=port, query=query).render_as_string(hide_password=False)


@contextmanager
def _reachable(url: str, delay_ms: float) -> Iterator[str]:
    if delay_ms <= 0:
        yield url
        return
    with DelayProxy(upstream_of(url), delay_ms / 1000) as port:
        yield through(url, port)


def bench_claims(plan: ClaimPlan, log: Log) -> dict[str, Any]:
    from airflow_kestra_provider.bench.compare import machine_info

    work_dir = Path(plan.work_dir or tempfile.mkdtemp(prefix="kestra-bench-claims-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    database = DatabaseServer(work_dir, plan.postgres_url)
    database.start()
    results: list[dict[str, Any]] = []
    started = time.time()
    try:
        url = database.create(DATABASE)
        log(f"work dir {work_dir}; airflow db migrate on a fresh database")
        migrate(url, work_dir)
        add_queued_task_instances(url, plan.rows)
        todo = cases(plan)
        bar = ProgressBar("claims")
        for n, case in enumerate(todo):
            bar.update(
                n, len(todo), f"poll size {case.poll_size}, {case.pollers} pollers, {case.delay_ms:g} ms"
            )
            with _reachable(url, case.delay_ms) as poll_url:
                results.append(run_case(poll_url, case, plan.duration))
        bar.close(f"claims: {len(todo)} cases done")
        database.drop(DATABASE)
    finally:
        database.stop()
    return {
        "bench": "claims",
        "started": started,
        "machine": machine_info(),
        "rows": plan.rows,
        "duration": plan.duration,
        "results": results,
    }


# -- output ------------------------------------------------------------------------------------
def write_claims(report: Mapping[str, Any], out: Path) -> None:
    from airflow_kestra_provider.bench.compare import write_report

    write_report(out, "claims", report, claims_markdown(report))


def claims_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    def fmt(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value:g}{unit}"

    return [
        {
            "delay": f"{r['delay_ms']:g} ms",
            "pollers": str(r["pollers"]),
            "poll size": str(r["poll_size"]),
            "claims/s": fmt(r["claims_per_second"]),
            "poll p50": fmt(r["poll_p50_ms"], " ms"),
            "poll p99": fmt(r["poll_p99_ms"], " ms"),
            "claimed": f"{r['claimed']}{'' if not r['emptied'] else ' (queue emptied)'}",
        }
        for r in report["results"]
    ]


def claims_markdown(report: Mapping[str, Any]) -> str:
    """Claims per second: one table per delay, pollers down, poll sizes across."""
    lines = [
        f"Poll statement alone, {report['rows']} queued task instances, {report['duration']:g} s per case; "
        f"{report['machine'].get('cpu_model', '?')}, {report['machine'].get('cpus', '?')} CPUs.",
        "",
    ]
    results = report["results"]
    sizes = sorted({r["poll_size"] for r in results})
    for delay in sorted({r["delay_ms"] for r in results}):
        lines += [
            f"Round trip added: {delay:g} ms. Task instances claimed per second (poll p50):",
            "",
            "| pollers | " + " | ".join(f"poll size {s}" for s in sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for pollers in sorted({r["pollers"] for r in results}):
            cells = []
            for size in sizes:
                found = [
                    r
                    for r in results
                    if r["delay_ms"] == delay and r["pollers"] == pollers and r["poll_size"] == size
                ]
                cell = "-"
                if found and found[0]["claims_per_second"] is not None:
                    cell = f"{found[0]['claims_per_second']:,.0f} ({found[0]['poll_p50_ms']:g} ms)"
                cells.append(cell)
            lines.append(f"| {pollers} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
