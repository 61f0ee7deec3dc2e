"""PNG plot of latency against rate: log y, one colour per stack, p50 solid and p99 dashed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 5.0, 100  # 800 x 500 pixels

COLOURS = {"stock": "tab:blue", "executor": "tab:green", "ours": "tab:orange"}


if TYPE_CHECKING:
    from matplotlib.figure import Figure


def latency_plot(
    series: Mapping[str, Sequence[dict[str, Any]]], path: Path, title: str = "Latency against rate"
) -> Path:
    """Write ``path``; ``series`` maps a stack name to its per-rate result dicts."""
    fig = latency_figure(series, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def latency_figure(
    series: Mapping[str, Sequence[dict[str, Any]]], title: str = "Latency against rate"
) -> Figure:
    """The figure: for each stack (in ``series`` order) a p50 line and a p99 line in its colour."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
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
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("rate (runs triggered per second)")
    ax.set_ylabel("latency: run end - run queued (s)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if plotted:
        ax.legend()
    return fig
