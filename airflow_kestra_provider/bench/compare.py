"""``bench compare`` and ``bench chain``: the same load on each chosen stack (stock, executor, kestra), side by side."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from airflow_kestra_provider.bench.collect import RunRecord
from airflow_kestra_provider.bench.load import LoadSpec, new_prefix, run_load
from airflow_kestra_provider.bench.plot import latency_plot
from airflow_kestra_provider.bench.progress import ProgressBar
from airflow_kestra_provider.bench.stacks import (
    DatabaseServer,
    flavour,
    prepare_dags,
    running_stack,
)
from airflow_kestra_provider.bench.stats import median, summarize
from airflow_kestra_provider.bench.table import chain_table, compare_table, run_table
from airflow_kestra_provider.bench.target import Endpoints, Target
from airflow_kestra_provider.stack.environment import ADMIN_USER
from airflow_kestra_provider.stack.stack import AirflowStack

Log = Callable[[str], None]
DAG_WAIT_SECONDS = 180.0
PRIME_TIMEOUT = 300.0


@dataclass
class StackPlan:
    """Where and how the throw-away stacks run."""

    dags_source: Path
    stacks: Sequence[str] = ("stock", "kestra")
    work_dir: Path | None = None
    postgres_url: str | None = None
    api_workers: int = 1
    settings: dict[str, str] = field(default_factory=dict)
    quiet: bool = False


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }


def target_for(stack: AirflowStack, dag_id: str) -> Target:
    """A checked target on ``stack``'s API and database, its DAG primed by one unmeasured run."""
    endpoints = Endpoints(stack.config.base_url, ADMIN_USER, stack.password, stack.config.sql_alchemy_conn)
    target = Target(endpoints, dag_id)
    target.client.wait_for_dag(dag_id, timeout=DAG_WAIT_SECONDS)
    target.check()
    prime(target)
    return target


def prime(target: Target, timeout: float = PRIME_TIMEOUT) -> None:
    """Run the DAG once, unmeasured, so the first rate does not pay for the stack's first run
    (first task process, first API calls, caches) or for start-up work still going on."""
    prefix = new_prefix(0).replace("kbench-", "kbench-prime-")
    run_id = f"{prefix}0"
    target.trigger(run_id)
    collector = target.collector(prefix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        record = collector.poll().get(run_id)
        if record is not None and record.finished:
            return
    raise TimeoutError(f"the priming run {run_id} did not finish within {timeout:.0f}s")


@dataclass
class BenchSite:
    """Where one bench command's throw-away stacks run: a work dir, its copy of the DAGs and a
    started database server."""

    plan: StackPlan
    work_dir: Path
    dags: Path
    database: DatabaseServer
    log: Log

    @contextmanager
    def stack(
        self, name: str, label: str, dag_id: str, prefix: str = ""
    ) -> Iterator[tuple[AirflowStack, Target]]:
        """Start stack ``name`` in ``work_dir/label``; yield it with a primed target on ``dag_id``;
        close the target and stop the stack after."""
        kind = flavour(name)
        self.log(
            f"{prefix}starting the {name} stack ({kind.executor}, `airflow {' '.join(kind.scheduler_args)}`, "
            f"`airflow {' '.join(kind.triggerer_args)}`) ..."
        )
        with running_stack(
            kind, self.database, self.work_dir, self.dags, label, self.plan.settings, self.plan.api_workers
        ) as stack:
            target = target_for(stack, dag_id)
            try:
                yield stack, target
            finally:
                target.close()


@contextmanager
def bench_site(
    plan: StackPlan,
    log: Log,
    chain_length: int | None = None,
    extra_dags: Mapping[str, str] | None = None,
) -> Iterator[BenchSite]:
    """Make the work dir and its DAGs, start the database server; stop it after."""
    work_dir = Path(plan.work_dir or tempfile.mkdtemp(prefix="kestra-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    dags = prepare_dags(work_dir, plan.dags_source, chain_length, extra_dags)
    database = DatabaseServer(work_dir, plan.postgres_url)
    database.start()
    log(f"work dir {work_dir} (component logs under <stack>/logs/components)")
    try:
        yield BenchSite(plan, work_dir, dags, database, log)
    finally:
        database.stop()


def compare(
    plan: StackPlan,
    dag_id: str,
    rates: Sequence[float],
    duration: float,
    warmup: float,
    repeat: int,
    drain_timeout: float,
    out: Path,
    log: Log,
) -> dict[str, Any]:
    """Run every rate on each stack (alternating the order when repeating); write results to ``out``."""
    raw: list[dict[str, Any]] = []
    started = time.time()
    info = machine_info()
    with bench_site(plan, log) as site:
        for rep in range(repeat):
            order = list(plan.stacks) if rep % 2 == 0 else list(reversed(plan.stacks))
            for name in order:
                with site.stack(name, f"{name}_{rep}", dag_id, f"[repeat {rep + 1}/{repeat}] ") as (
                    _,
                    target,
                ):
                    saturated_at: float | None = None
                    for rate in rates:
                        entry: dict[str, Any] = {"stack": name, "repeat": rep}
                        if saturated_at is not None:
                            raw.append({**entry, "rate": rate, "skipped": f"backlog at {saturated_at:g}/s"})
                            log(f"  {name} {rate:g}/s skipped: runs of {saturated_at:g}/s still unfinished")
                            continue
                        spec = LoadSpec(dag_id, rate, duration, warmup, drain_timeout)
                        bar = ProgressBar(f"  {name} {rate:g}/s", quiet=plan.quiet)
                        result = run_load(spec, target.trigger, target.collector, bar)
                        raw.append({**entry, **result.to_dict()})
                        if not result.drained:
                            saturated_at = rate
                log(f"[repeat {rep + 1}/{repeat}] {name} stack stopped")
    merged = {name: aggregate([r for r in raw if r["stack"] == name], rates) for name in plan.stacks}
    report = {
        "kind": "compare",
        "dag_id": dag_id,
        "rates": list(rates),
        "duration": duration,
        "warmup": warmup,
        "repeat": repeat,
        "drain_timeout": drain_timeout,
        "stacks": {name: _flavour_dict(name) for name in plan.stacks},
        "machine": info,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_seconds": round(time.time() - started, 1),
        "results": merged,
        "raw": raw,
    }
    write_compare(report, out)
    return report


def _flavour_dict(name: str) -> dict[str, Any]:
    kind = flavour(name)
    return {"executor": kind.executor, "scheduler_command": ["airflow", *kind.scheduler_args]}


def aggregate(results: Sequence[dict[str, Any]], rates: Sequence[float]) -> list[dict[str, Any]]:
    """One result per rate: medians over repeats of every latency figure, counts summed."""
    merged = []
    for rate in rates:
        runs = [r for r in results if r["rate"] == rate and not r.get("skipped")]
        if not runs:
            skipped = next((r["skipped"] for r in results if r["rate"] == rate), "not run")
            merged.append({"rate": rate, "skipped": skipped})
            continue
        entry: dict[str, Any] = {"rate": rate, "repeats": len(runs)}
        for key in ("sent", "completed", "succeeded", "failed", "send_errors"):
            entry[key] = sum(r[key] for r in runs)
        for key in ("achieved_rate", "throughput"):
            values = [r[key] for r in runs if r[key] is not None]
            entry[key] = median(values) if values else None
        for group in ("latency", "to_first_task"):
            parts = [r[group] for r in runs if r[group]]
            entry[group] = (
                {k: median([p[k] for p in parts]) for k in ("mean", "p50", "p90", "p99", "max")}
                if parts
                else None
            )
        lags = [r["max_send_lag"] for r in runs if r.get("max_send_lag") is not None]
        entry["max_send_lag"] = max(lags) if lags else None
        entry["drained"] = all(r["drained"] for r in runs)
        merged.append(entry)
    return merged


def write_report(out: Path, name: str, report: Mapping[str, Any], markdown: str) -> None:
    """``out/<name>.json`` (the whole report) and ``out/<name>.md`` (its tables)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown)


def write_compare(report: dict[str, Any], out: Path) -> None:
    write_report(out, "results", report, compare_markdown(report))
    latency_plot(
        report["results"],
        out / "latency.png",
        title=f"{report['dag_id']}: latency against rate ({report['duration']:g} s per rate)",
    )


def compare_markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    rates = report["rates"]
    by_rate = {name: {r["rate"]: r for r in rows} for name, rows in results.items()}
    parts = [
        f"# bench compare: {report['dag_id']}\n",
        f"{report['duration']:g} s per rate after {report['warmup']:g} s warm-up, "
        f"{report['repeat']} repeat(s), started {report['started_at']}, "
        f"{report['machine']['cpus']} CPUs, {report['machine']['memory_gib']} GiB.\n",
    ]
    if len(by_rate) > 1:
        parts.append(compare_table(rates, by_rate))
    for name, rows in results.items():
        stack = report["stacks"][name]
        parts.append(
            f"\n## {name}: {stack['executor']}, `{' '.join(stack['scheduler_command'])}`\n\n"
            + run_table(rows)
        )
    return "\n".join(parts)


# -- chain --------------------------------------------------------------------------------------


def chain(
    plan: StackPlan,
    length: int,
    runs: int,
    warmup_runs: int,
    run_timeout: float,
    out: Path | None,
    log: Log,
) -> dict[str, Any]:
    """Per stack: trigger the chain DAG ``runs`` times, one after another; per-link latency."""
    dag_id = f"kestra_bench_chain{length}"
    results = []
    with bench_site(plan, log, length) as site:
        for name in plan.stacks:
            with site.stack(name, f"chain_{name}", dag_id) as (_, target):
                bar = ProgressBar(f"  {name} chain", quiet=plan.quiet)
                records = sequential_runs(target, warmup_runs + runs, run_timeout, bar)[warmup_runs:]
            results.append(chain_result(name, length, runs, records))
    report = {
        "kind": "chain",
        "dag_id": dag_id,
        "length": length,
        "runs": runs,
        "machine": machine_info(),
        "results": results,
    }
    if out is not None:
        write_report(out, "chain", report, f"# bench chain: {dag_id}\n\n" + chain_table(results))
    return report


def sequential_runs(target: Target, count: int, timeout: float, bar: ProgressBar) -> list[RunRecord]:
    """Trigger ``count`` runs one at a time, each after the previous finished (closed loop on purpose:
    a chain measures the path through one run, not behaviour under load)."""
    prefix = new_prefix(0)
    collector = target.collector(prefix)
    done: list[RunRecord] = []
    for i in range(count):
        run_id = f"{prefix}{i:07d}"
        target.trigger(run_id)
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(0.25)
            record = collector.poll().get(run_id)
            if record is not None and record.finished:
                done.append(record)
                break
            if time.monotonic() > deadline:
                break
        bar.update(i + 1, count, "runs")
    bar.close(f"done: {len(done)}/{count} runs finished")
    return done


def chain_result(stack: str, length: int, runs: int, records: Sequence[RunRecord]) -> dict[str, Any]:
    durations = [r.duration for r in records if r.duration is not None]
    per_link = summarize([d / length for d in durations])
    duration = summarize(durations)
    return {
        "stack": stack,
        "runs": runs,
        "completed": len(durations),
        "succeeded": sum(1 for r in records if r.state == "success"),
        "per_link": None if per_link is None else per_link.to_dict(),
        "duration": None if duration is None else duration.to_dict(),
    }
