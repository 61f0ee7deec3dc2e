"""``bench ceiling``: the highest rate each stack keeps up with, and its CPU per run at a fixed rate.

Per stack, on a fresh throw-away stack:

1. **CPU step** at ``cpu_rate``: CPU-seconds of every component's process tree (api-server,
   scheduler with its embedded worker, runners and task processes, remote workers, dag-processor,
   triggerer, PostgreSQL) over the step, divided by the runs that finished in it.
2. **Ladder**: the rates in increasing order, ``duration`` s each; it stops at the first rate the
   stack does not keep up with. Keeping up means every measured run finished within the drain
   timeout, runs finished at no less than ``KEEP_UP_SHARE`` of the rate sent (the service rate,
   first to last end), and the p50 latency stayed under a limit: ``BACKLOG_P50`` s for the
   throughput ceiling (a p50 that high means a backlog grew during the step), ``FAST_P50`` s
   for the fast ceiling (the highest rate served with p50 under 1 s).

With ``cpu_repeats`` above 1, the CPU step is taken that many times per stack, each time on a
fresh stack, the order of the stacks reversed each time (A B, then B A, then A B ...), so that a
machine whose speed drifts during the run does not favour the stack measured first; the CPU per
run reported is the median of the steps, and every step's total is kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from airflow_kestra_provider.bench.compare import StackPlan, bench_site, machine_info, write_report
from airflow_kestra_provider.bench.cpu import POSTGRES, CpuProbe, postgres_postmaster
from airflow_kestra_provider.bench.load import LoadSpec, run_load
from airflow_kestra_provider.bench.plot import latency_plot
from airflow_kestra_provider.bench.progress import ProgressBar
from airflow_kestra_provider.bench.table import fmt_cpu, fmt_rate, fmt_seconds, markdown
from airflow_kestra_provider.bench.target import Target
from airflow_kestra_provider.stack.stack import AirflowStack

Log = Callable[[str], None]
KEEP_UP_SHARE = 0.9
BACKLOG_P50 = 10.0
FAST_P50 = 1.0


def keeps_up(step: Mapping[str, Any], p50_limit: float = BACKLOG_P50) -> bool:
    """Whether one ladder step kept up with the rate it was sent (see the module docstring)."""
    if not step.get("drained") or step.get("completed", 0) < step.get("sent", 0):
        return False
    throughput = step.get("throughput")
    latency = step.get("latency") or {}
    p50 = latency.get("p50")
    return (
        throughput is not None
        and throughput >= KEEP_UP_SHARE * step["rate"]
        and p50 is not None
        and p50 < p50_limit
    )


def ceiling_of(steps: Sequence[Mapping[str, Any]], p50_limit: float = BACKLOG_P50) -> float | None:
    """The highest rate of the ladder kept up with (p50 under ``p50_limit``) before the first
    rate that was not."""
    best: float | None = None
    for step in sorted(steps, key=lambda s: s["rate"]):
        if step.get("skipped") or not keeps_up(step, p50_limit):
            break
        best = step["rate"]
    return best


def _probe(stack: AirflowStack, target: Target) -> CpuProbe:
    roots = {c.name: c.process.pid for c in stack.supervisor.components if c.process is not None}
    postmaster = postgres_postmaster(target.engine)
    if postmaster is not None:
        roots[POSTGRES] = postmaster
    return CpuProbe(roots)


def stack_ceiling(
    stack: AirflowStack, target: Target, name: str, rates: Sequence[float], cpu_spec: LoadSpec, quiet: bool
) -> dict[str, Any]:
    """The CPU step (``cpu_spec``), then the ladder: ``cpu_spec``'s load at each of ``rates``,
    lowest first, until one is not kept up with."""
    cpu_step = stack_cpu_step(stack, target, name, cpu_spec, quiet)
    steps: list[dict[str, Any]] = []
    for rate in sorted(rates):
        if steps and not keeps_up(steps[-1]):
            steps.append({"rate": rate, "skipped": f"not kept up at {steps[-1]['rate']:g}/s"})
            continue
        bar = ProgressBar(f"  {name} {rate:g}/s", quiet=quiet)
        steps.append(run_load(replace(cpu_spec, rate=rate), target.trigger, target.collector, bar).to_dict())
    return {
        "stack": name,
        "ceiling": ceiling_of(steps),
        "fast_ceiling": ceiling_of(steps, FAST_P50),
        "cpu_rate": cpu_spec.rate,
        "cpu_step": cpu_step,
        "cpu_steps": [cpu_step],
        "steps": steps,
    }


def stack_cpu_step(
    stack: AirflowStack, target: Target, name: str, spec: LoadSpec, quiet: bool
) -> dict[str, Any]:
    """The CPU step: the load of ``spec`` with every component's CPU sampled."""
    probe = _probe(stack, target)
    bar = ProgressBar(f"  {name} CPU at {spec.rate:g}/s", quiet=quiet)
    return run_load(spec, target.trigger, target.collector, bar, cpu_probe=probe.sample).to_dict()


def stack_orders(stacks: Sequence[str], repeats: int) -> list[list[str]]:
    """The order of the stacks for each repeat of the CPU step: as given, then reversed, and so on."""
    return [list(stacks) if n % 2 == 0 else list(reversed(stacks)) for n in range(repeats)]


def ceiling(
    plan: StackPlan,
    dag_id: str,
    rates: Sequence[float],
    duration: float,
    warmup: float,
    cpu_rate: float,
    drain_timeout: float,
    out: Path,
    log: Log,
    cpu_repeats: int = 1,
) -> dict[str, Any]:
    started = time.time()
    info = machine_info()
    results = []
    orders = stack_orders(plan.stacks, cpu_repeats)
    cpu_spec = LoadSpec(dag_id, cpu_rate, duration, warmup, drain_timeout)
    with bench_site(plan, log) as site:
        for name in orders[0]:
            with site.stack(name, f"ceiling_{name}", dag_id) as (stack, target):
                results.append(stack_ceiling(stack, target, name, rates, cpu_spec, plan.quiet))
            log(f"{name}: ceiling {results[-1]['ceiling']} runs/s")
        by_name = {r["stack"]: r for r in results}
        for number, order in enumerate(orders[1:], start=2):
            for name in order:
                label = f"ceiling_{name}_cpu{number}"
                with site.stack(name, label, dag_id, prefix=f"CPU step {number}: ") as (stack, target):
                    by_name[name]["cpu_steps"].append(
                        stack_cpu_step(stack, target, name, cpu_spec, plan.quiet)
                    )
    report = {
        "kind": "ceiling",
        "dag_id": dag_id,
        "rates": sorted(rates),
        "duration": duration,
        "warmup": warmup,
        "cpu_rate": cpu_rate,
        "cpu_orders": [list(order) for order in orders],
        "keep_up": {
            "share_of_rate": KEEP_UP_SHARE,
            "p50_below_seconds": BACKLOG_P50,
            "fast_p50_below_seconds": FAST_P50,
        },
        "machine": info,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_seconds": round(time.time() - started, 1),
        "results": results,
    }
    write_ceiling(report, out)
    return report


def write_ceiling(report: Mapping[str, Any], out: Path) -> None:
    write_report(out, "ceiling", report, ceiling_markdown(report))
    latency_plot(
        {r["stack"]: r["steps"] for r in report["results"]},
        out / "ceiling.png",
        title=f"{report['dag_id']}: latency against rate, up to each stack's ceiling",
    )


# Parts of a component tree that runs tasks, shown below it: its root process, the task
# processes its descendants forked and reaped, and its other processes (executor workers, runners).
ROOT_PART, TASKS_PART, OTHER_PART = ": root process", ": task processes", ": other processes"


def _cpu_components(result: Mapping[str, Any]) -> dict[str, float | None]:
    """CPU-s per run by component, each the median over the CPU steps (one value
    per step: see :func:`_step_components`)."""
    per_step = [_step_components(step) for step in result.get("cpu_steps") or [result["cpu_step"]]]
    found: dict[str, float | None] = {}
    for name in [n for step in per_step for n in step]:
        if name not in found:
            values = [v for step in per_step if (v := step.get(name)) is not None]
            found[name] = statistics.median(values) if values else None
    return found


def _step_components(cpu_step: Mapping[str, Any]) -> dict[str, float | None]:
    """CPU-s per run by component (trees of the same kind added up), each tree that reaped
    processes (task processes) followed by its three parts, and the total."""
    cpu = cpu_step.get("cpu") or {}
    found: dict[str, float | None] = {}

    def add(name: str, value: float | None) -> None:
        found[name] = (found.get(name) or 0.0) + (value or 0.0)

    for row in cpu.get("components", []):
        name = "kestra-worker" if row["component"].startswith("kestra-worker") else row["component"]
        add(name, row["per_run"])
        if row.get("reaped_per_run") and row.get("own_per_run") is not None:
            add(name + ROOT_PART, row["own_per_run"])
            add(name + TASKS_PART, row["reaped_per_run"])
            add(name + OTHER_PART, (row["per_run"] or 0.0) - row["own_per_run"] - row["reaped_per_run"])
    found["total"] = (cpu.get("total") or {}).get("per_run")
    return found


def ceiling_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per stack: its ceiling, the p50 there, its fast ceiling and its CPU per run at
    ``cpu_rate`` (all components)."""
    rows = []
    for r in report["results"]:
        top = next((s for s in r["steps"] if s["rate"] == r["ceiling"]), None)
        rows.append(
            {
                "stack": r["stack"],
                "ceiling": "none" if r["ceiling"] is None else fmt_rate(r["ceiling"]),
                "p50_at_ceiling": "-" if top is None else fmt_seconds(top["latency"]["p50"]),
                "fast_ceiling": "none" if r["fast_ceiling"] is None else fmt_rate(r["fast_ceiling"]),
                "cpu_rate": f"{report['cpu_rate']:g}/s",
                "cpu_per_run": fmt_cpu(_cpu_components(r)["total"]),
            }
        )
    return rows


def ceiling_markdown(report: Mapping[str, Any]) -> str:
    results = report["results"]
    machine = report["machine"]
    parts = [
        f"# bench ceiling: {report['dag_id']}\n",
        f"{report['duration']:g} s per rate after {report['warmup']:g} s warm-up; kept up = every run "
        f"finished, at >= {report['keep_up']['share_of_rate']:.0%} of the rate, p50 < "
        f"{report['keep_up']['p50_below_seconds']:g} s (ceiling) or < "
        f"{report['keep_up']['fast_p50_below_seconds']:g} s (fast ceiling). Started "
        f"{report['started_at']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB.\n",
    ]
    rows = [
        (row["stack"], row["ceiling"], row["p50_at_ceiling"], row["fast_ceiling"], row["cpu_per_run"])
        for row in ceiling_rows(report)
    ]
    parts.append(
        markdown(
            (
                "stack",
                "ceiling",
                "p50 at the ceiling",
                "fast ceiling (p50 < 1 s)",
                f"CPU per run at {report['cpu_rate']:g}/s",
            ),
            rows,
        )
    )
    names: list[str] = []
    per_stack = {r["stack"]: _cpu_components(r) for r in results}
    for found in per_stack.values():
        names += [n for n in found if n not in names and n != "total"]
    cpu_rows = [
        (
            name,
            *(
                "-" if per_stack[s].get(name) is None else f"{(per_stack[s][name] or 0.0) * 1000:.0f} ms"
                for s in per_stack
            ),
        )
        for name in [*names, "total"]
    ]
    orders = report.get("cpu_orders") or [[r["stack"] for r in results]]
    median_of = f", median of {len(orders)} CPU steps" if len(orders) > 1 else ""
    parts.append(
        f"\nCPU per run by component at {report['cpu_rate']:g} runs/s{median_of} (process trees; a tree that ran "
        "tasks is followed by its parts: its root process, the task processes that ended, and its other "
        "processes, such as executor workers or runners):\n\n" + markdown(("component", *per_stack), cpu_rows)
    )
    if len(orders) > 1:
        by_name = {r["stack"]: r["cpu_steps"] for r in results}
        step_rows = [
            (
                f"{number} ({', '.join(order)})",
                *(
                    fmt_cpu(_step_components(by_name[s][number - 1])["total"])
                    if len(by_name[s]) >= number
                    else "-"
                    for s in per_stack
                ),
            )
            for number, order in enumerate(orders, start=1)
        ]
        parts.append(
            "\nCPU per run at each CPU step (in brackets, the order in which the stacks took it; every step "
            "on a fresh stack, the first one before the ladder):\n\n"
            + markdown(("CPU step", *per_stack), step_rows)
        )
    ladder_rows = []
    for r in results:
        for s in r["steps"]:
            if s.get("skipped"):
                ladder_rows.append((r["stack"], f"{s['rate']:g}/s", "skipped", "-", "-", "-", "-"))
                continue
            latency = s.get("latency") or {}
            ladder_rows.append(
                (
                    r["stack"],
                    f"{s['rate']:g}/s",
                    f"{s['completed']}/{s['sent']}",
                    fmt_rate(s.get("throughput")),
                    fmt_seconds(latency.get("p50")),
                    "yes" if keeps_up(s) else "no",
                    "yes" if keeps_up(s, FAST_P50) else "no",
                )
            )
    parts.append(
        "\nLadder:\n\n"
        + markdown(
            ("stack", "rate", "finished", "throughput", "p50", "kept up", "kept up fast (p50 < 1 s)"),
            ladder_rows,
        )
    )
    return "\n".join(parts)
