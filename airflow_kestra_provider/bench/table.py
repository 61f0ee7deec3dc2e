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


def fmt_ratio(stock: float | None, ours: float | None) -> str:
    if stock is None or ours is None or ours == 0:
        return "-"
    return f"{stock / ours:.2f}x"


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


CHAIN_HEADERS = ("stack", "runs", "per link p50", "per link p90", "per link max", "run duration p50")


def chain_table(results: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            r["stack"],
            f"{r['completed']}/{r['runs']}",
            fmt_seconds(_get(r, "per_link", "p50")),
            fmt_seconds(_get(r, "per_link", "p90")),
            fmt_seconds(_get(r, "per_link", "max")),
            fmt_seconds(_get(r, "duration", "p50")),
        ]
        for r in results
    ]
    by_stack = {r["stack"]: r for r in results}
    if len(by_stack) > 1:
        base = baseline(list(by_stack))
        b = by_stack[base]
        for name, other in by_stack.items():
            if name == base:
                continue
            rows.append(
                [
                    f"{base}/{name}",
                    "",
                    *(
                        fmt_ratio(_get(b, "per_link", k), _get(other, "per_link", k))
                        for k in ("p50", "p90", "max")
                    ),
                    fmt_ratio(_get(b, "duration", "p50"), _get(other, "duration", "p50")),
                ]
            )
    return markdown(CHAIN_HEADERS, rows)
