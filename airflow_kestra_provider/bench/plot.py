"""PNG plot of latency against rate: log y, one colour per stack, p50 solid and p99 dashed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 5.0, 100  # 800 x 500 pixels

COLOURS = {"stock": "tab:blue", "executor": "tab:green", "kestra": "tab:orange"}


if TYPE_CHECKING:
    from matplotlib.figure import Figure


MATPLOTLIB_MISSING = "plots need matplotlib: pip install 'airflow-kestra-provider[bench]'"


def _matplotlib_missing() -> Exception:
    """The error for a missing ``bench`` extra: one line, as the bench CLI prints it (exit 2)."""
    from airflow_kestra_provider.bench.target import BenchUsageError

    return BenchUsageError(MATPLOTLIB_MISSING)


def require_matplotlib() -> None:
    """Raise :class:`~airflow_kestra_provider.bench.target.BenchUsageError` naming the ``bench``
    extra unless matplotlib is installed; cheap (nothing imported), so a bench can check first."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise _matplotlib_missing()


def _matplotlib() -> Any:
    """matplotlib (and its ticker) on the Agg backend, or the one-line error naming the extra."""
    try:
        import matplotlib
        import matplotlib.ticker
    except ModuleNotFoundError as err:
        if err.name != "matplotlib":
            raise
        raise _matplotlib_missing() from None
    matplotlib.use("Agg")
    return matplotlib


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def latency_plot(
    series: Mapping[str, Sequence[dict[str, Any]]], path: Path, title: str = "Latency against rate"
) -> Path:
    """Write ``path``; ``series`` maps a stack name to its per-rate result dicts."""
    return _save(latency_figure(series, title), path)


def latency_figure(
    series: Mapping[str, Sequence[dict[str, Any]]], title: str = "Latency against rate"
) -> Figure:
    """The figure: for each stack (in ``series`` order) a p50 line and a p99 line in its colour."""
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    ax = fig.add_subplot()
    plotted = False
    all_rates: set[float] = set()
    for index, (stack, results) in enumerate(series.items()):
        colour = COLOURS.get(stack, f"C{index + 3}")
        points = sorted(
            (r["rate"], r["latency"]["p50"], r["latency"]["p99"])
            for r in results
            if not r.get("skipped") and r.get("latency")
        )
        if not points:
            continue
        rates = [p[0] for p in points]
        all_rates.update(rates)
        ax.plot(rates, [p[1] for p in points], "-o", color=colour, label=f"{stack} p50")
        ax.plot(rates, [p[2] for p in points], "--s", color=colour, label=f"{stack} p99")
        plotted = True
    ax.set_yscale("log")
    if all_rates:
        ax.set_xticks(sorted(all_rates))
    label = matplotlib.ticker.FuncFormatter(lambda v, _: latency_tick_label(v, *ax.get_ylim()))
    ax.yaxis.set_major_formatter(label)
    ax.yaxis.set_minor_formatter(label)
    ax.set_xlabel("rate (runs triggered per second)")
    ax.set_ylabel("latency: run end - run queued (s)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if plotted:
        ax.legend()
    return fig


def latency_tick_label(value: float, low: float, high: float) -> str:
    """Text of the log-scale latency tick at ``value`` s while the axis shows ``low`` .. ``high`` s.

    Decades (0.1, 1, 10, ...) are always labelled, as plain numbers. The ticks between them are
    labelled only where that does not crowd the axis: none when two or more decades are in view,
    2, 3 and 5 times a decade when fewer, every one when the view spans under 0.4 of a decade.
    """
    if value <= 0 or low <= 0 or high <= 0:
        return ""
    low, high = min(low, high), max(low, high)
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    if math.isclose(mantissa, 1) or math.isclose(mantissa, 10):
        return f"{value:g}"
    decades_in_view = math.floor(math.log10(high) + 1e-9) - math.floor(math.log10(low) + 1e-9)
    if decades_in_view >= 2:
        return ""
    if math.log10(high / low) < 0.4:
        return f"{value:g}"
    if round(mantissa) in (2, 3, 5) and math.isclose(mantissa, round(mantissa), rel_tol=1e-6):
        return f"{value:g}"
    return ""


def defer_plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write ``path``: the ``bench defer`` many-deferred figures of each stack against the number
    of tasks deferred at once."""
    return _save(defer_figure(results), path)


def defer_figure(results: Sequence[dict[str, Any]]) -> Figure:
    """Two panels, log-log, one colour per stack: the triggerer loop's CPU per second while the
    tasks wait, and the resume lag once they fire (p50 solid, p99 dashed). A count a stack has no
    figure for (it timed out) is left out of its line."""
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN * 1.5, HEIGHT_IN), dpi=DPI)
    cpu_ax, lag_ax = fig.subplots(1, 2)
    counts: set[int] = set()
    for index, result in enumerate(results):
        colour = COLOURS.get(result["stack"], f"C{index + 3}")
        measured = [m for m in result.get("many", []) if "error" not in m]
        cpu = [
            (m["count"], 1000 * m["idle_cpu_per_second"]["triggerer_loop"])
            for m in measured
            if m.get("idle_cpu_per_second", {}).get("triggerer_loop")
        ]
        lags = [
            (m["count"], m["resume_lag"]["p50"], m["resume_lag"]["p99"])
            for m in measured
            if m.get("resume_lag")
        ]
        if cpu:
            cpu_ax.plot([c for c, _ in cpu], [v for _, v in cpu], "-o", color=colour, label=result["stack"])
        for quantile, column, style in (("p50", 1, "-o"), ("p99", 2, "--s")):
            if lags:
                xs, ys = [lag[0] for lag in lags], [lag[column] for lag in lags]
                lag_ax.plot(xs, ys, style, color=colour, label=f"{result['stack']} {quantile}")
        counts.update(m["count"] for m in measured)
    for ax, ylabel, title in (
        (cpu_ax, "triggerer loop CPU while waiting (ms per s)", "Triggerer loop while tasks wait"),
        (lag_ax, "resume lag: task end - trigger due (s)", "Resume lag once they fire"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        label = matplotlib.ticker.FuncFormatter(lambda v, _, ax=ax: latency_tick_label(v, *ax.get_ylim()))
        ax.yaxis.set_major_formatter(label)
        ax.yaxis.set_minor_formatter(label)
        if counts:
            ax.set_xticks(sorted(counts))
            ax.set_xticklabels([f"{c:,}" for c in sorted(counts)])
        ax.set_xlabel("tasks deferred at once")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend()
    fig.tight_layout()
    return fig
