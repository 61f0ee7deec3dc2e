"""Markdown tables of bench results: one deployment (Kestra-style), and stacks side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}/s"


def fmt_cpu(value: float | None) -> str:
    """CPU-seconds per run, in milliseconds."""
    return "-" if value is None else f"{value * 1000:.0f} ms"


def fmt_ratio(stock: float | None, other: float | None) -> str:
    if stock is None or other is None or other == 0:
        return "-"
    return f"{stock / other:.2f}x"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _get(result: dict[str, Any] | None, *path: str) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


RUN_HEADERS = (
    "rate",
    "sent",
    "achieved",
    "send lag max",
    "finished",
    "succeeded",
    "p50",
    "p90",
    "p99",
    "max",
    "queued->1st task p50",
    "throughput",
)


def run_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per rate: Kestra's table plus counts, first-task delay and throughput."""
    rows = []
    for r in results:
        if r.get("skipped"):
            rows.append([f"{r['rate']:g}/s", *(["-"] * (len(RUN_HEADERS) - 2)), f"skipped: {r['skipped']}"])
            continue
        rows.append(
            [
                f"{r['rate']:g}/s",
                str(r["sent"]),
                fmt_rate(r["achieved_rate"]),
                fmt_seconds(r.get("max_send_lag")),
                str(r["completed"]),
                str(r["succeeded"]),
                fmt_seconds(_get(r, "latency", "p50")),
                fmt_seconds(_get(r, "latency", "p90")),
                fmt_seconds(_get(r, "latency", "p99")),
                fmt_seconds(_get(r, "latency", "max")),
                fmt_seconds(_get(r, "to_first_task", "p50")),
                fmt_rate(r["throughput"]),
            ]
        )
    return markdown(RUN_HEADERS, rows)


def run_rows(results: Sequence[dict[str, Any]], stack: str | None = None) -> list[dict[str, str]]:
    """One row per rate for ``-o table|json|yaml|plain``: counts, latency percentiles, throughput,
    and the CPU per run of the whole deployment when the results have it (``--cpu``)."""
    with_cpu = any("cpu" in r for r in results)
    rows = []
    for r in results:
        row = {} if stack is None else {"stack": stack}
        row["rate"] = f"{r['rate']:g}/s"
        if r.get("skipped"):
            row.update(
                sent="-", finished=f"skipped ({r['skipped']})", p50="-", p90="-", p99="-", throughput="-"
            )
        else:
            row.update(
                sent=str(r["sent"]),
                finished=str(r["completed"]),
                p50=fmt_seconds(_get(r, "latency", "p50")),
                p90=fmt_seconds(_get(r, "latency", "p90")),
                p99=fmt_seconds(_get(r, "latency", "p99")),
                throughput=fmt_rate(r.get("throughput")),
            )
        if with_cpu:
            row["cpu_per_run"] = fmt_cpu(_get(r, "cpu", "total", "per_run"))
        rows.append(row)
    return rows


def compare_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """``run_rows`` of every stack (medians over repeats), rate by rate, the stacks side by side."""
    per_stack = {name: run_rows(results, stack=name) for name, results in report["results"].items()}
    rows = []
    for index in range(max((len(r) for r in per_stack.values()), default=0)):
        rows += [stack_rows[index] for stack_rows in per_stack.values() if index < len(stack_rows)]
    return rows


# (label, path into a result dict, formatter)
COMPARE_FIGURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("latency p50", ("latency", "p50"), "s"),
    ("latency p90", ("latency", "p90"), "s"),
    ("latency p99", ("latency", "p99"), "s"),
    ("latency max", ("latency", "max"), "s"),
    ("queued->1st task p50", ("to_first_task", "p50"), "s"),
    ("throughput", ("throughput",), "r"),
)


def baseline(stacks: Sequence[str]) -> str:
    """The stack the others are measured against: "stock" when it ran, else the first one."""
    return "stock" if "stock" in stacks else stacks[0]


def compare_table(rates: Sequence[float], by_stack: Mapping[str, Mapping[float, dict[str, Any]]]) -> str:
    """Per rate and figure: each stack's value, then base/other for every other stack (base is
    "stock" when it ran; above 1 means the other stack is faster for latencies)."""
    names = list(by_stack)
    base = baseline(names)
    others = [n for n in names if n != base]
    rows = []
    for rate in rates:
        results = {n: by_stack[n].get(rate) for n in names}
        rows.append(
            [f"{rate:g}/s", "finished/sent", *(_counts(results[n]) for n in names), *([""] * len(others))]
        )
        for label, path, kind in COMPARE_FIGURES:
            values = {n: _get(results[n], *path) for n in names}
            fmt = fmt_seconds if kind == "s" else fmt_rate
            rows.append(
                [
                    "",
                    label,
                    *(fmt(values[n]) for n in names),
                    *(fmt_ratio(values[base], values[o]) for o in others),
                ]
            )
    return markdown(("rate", "figure", *names, *(f"{base}/{o}" for o in others)), rows)


def _counts(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    if result.get("skipped"):
        return f"skipped ({result['skipped']})"
    return f"{result['completed']}/{result['sent']}"


def chain_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per stack: runs finished, per-link latency and run duration."""
    return [
        {
            "stack": r["stack"],
            "runs": f"{r['completed']}/{r['runs']}",
            "per_link_p50": fmt_seconds(_get(r, "per_link", "p50")),
            "per_link_p90": fmt_seconds(_get(r, "per_link", "p90")),
            "per_link_max": fmt_seconds(_get(r, "per_link", "max")),
            "run_duration_p50": fmt_seconds(_get(r, "duration", "p50")),
        }
        for r in results
    ]


CHAIN_HEADERS = ("stack", "runs", "per link p50", "per link p90", "per link max", "run duration p50")


def chain_table(results: Sequence[dict[str, Any]]) -> str:
    rows = [list(row.values()) for row in chain_rows(results)]
    figures = [("per_link", "p50"), ("per_link", "p90"), ("per_link", "max"), ("duration", "p50")]
    rows += ratio_rows(results, figures)
    return markdown(CHAIN_HEADERS, rows)


def ratio_rows(results: Sequence[dict[str, Any]], figures: Sequence[tuple[str, str]]) -> list[list[str]]:
    """One row per stack other than the baseline (see :func:`baseline`): ``base/other`` for each
    ``(section, key)`` figure, after an empty runs column."""
    by_stack = {r["stack"]: r for r in results}
    if len(by_stack) < 2:
        return []
    base = baseline(list(by_stack))
    return [
        [
            f"{base}/{name}",
            "",
            *(fmt_ratio(_get(by_stack[base], *figure), _get(other, *figure)) for figure in figures),
        ]
        for name, other in by_stack.items()
        if name != base
    ]


DEFER_HEADERS = ("stack", "runs", "overhead p50", "overhead p90", "overhead max")
DEFERRED_HEADERS = (
    "stack",
    "deferred",
    "all owned after",
    "then all running after",
    "triggerer loop CPU while waiting",
    "triggerer CPU while waiting",
    "PostgreSQL CPU while waiting",
    "resume lag p50",
    "resume lag p99",
    "resume lag max",
    "triggerer CPU while firing",
)


def _started(many: dict[str, Any]) -> str:
    """The "then all running after" cell: seconds, or that they were not all running in time."""
    if many.get("started_seconds") is None and "window_note" in many:
        return "not all before the window"
    return fmt_seconds(many.get("started_seconds"))


def _cpu_per_second(value: float | None) -> str:
    """CPU-seconds per second of wall time, as milliseconds per second."""
    return "-" if value is None else f"{value * 1000:.0f} ms/s"


def defer_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per stack: overhead runs and, per count of tasks deferred at once, the triggerer."""
    rows = []
    for r in results:
        row = {
            "stack": r["stack"],
            "runs": f"{r['completed']}/{r['runs']}",
            "overhead_p50": fmt_seconds(_get(r, "overhead", "p50")),
            "overhead_p90": fmt_seconds(_get(r, "overhead", "p90")),
        }
        for m in r.get("many", []):
            row[f"loop_cpu_{m['count']}"] = _cpu_per_second(_get(m, "idle_cpu_per_second", "triggerer_loop"))
            row[f"resume_lag_p99_{m['count']}"] = fmt_seconds(_get(m, "resume_lag", "p99"))
        rows.append(row)
    return rows


def defer_table(results: Sequence[dict[str, Any]]) -> str:
    """Deferral overhead per stack (with ratios to the first stack), then the many-deferred rows."""
    rows = [
        [
            r["stack"],
            f"{r['completed']}/{r['runs']}",
            *(fmt_seconds(_get(r, "overhead", k)) for k in ("p50", "p90", "max")),
        ]
        for r in results
    ]
    rows += ratio_rows(results, [("overhead", k) for k in ("p50", "p90", "max")])
    text = markdown(DEFER_HEADERS, rows)
    many_rows = []
    for r in results:
        for m in r.get("many", []):
            if "error" in m:
                many_rows.append(
                    [r["stack"], f"{m['count']:,}", m["error"], *[""] * (len(DEFERRED_HEADERS) - 3)]
                )
                continue
            ended = "" if m.get("ended", m["count"]) >= m["count"] else f" ({m['ended']:,} ended)"
            many_rows.append(
                [
                    r["stack"],
                    f"{m['count']:,}{ended}",
                    fmt_seconds(m.get("taken_seconds")),
                    _started(m),
                    _cpu_per_second(_get(m, "idle_cpu_per_second", "triggerer_loop")),
                    _cpu_per_second(_get(m, "idle_cpu_per_second", "triggerer")),
                    _cpu_per_second(_get(m, "idle_cpu_per_second", "postgres")),
                    *(fmt_seconds(_get(m, "resume_lag", k)) for k in ("p50", "p99", "max")),
                    _cpu_per_second(_get(m, "fire_cpu_per_second", "triggerer")),
                ]
            )
    if many_rows:
        text += "\n" + markdown(DEFERRED_HEADERS, many_rows)
    return text
