from __future__ import annotations

import struct

import pytest

from airflow_kestra_provider.bench.plot import (
    COLOURS,
    DPI,
    HEIGHT_IN,
    WIDTH_IN,
    latency_figure,
    latency_plot,
    latency_tick_label,
)
from airflow_kestra_provider.bench.table import chain_table, compare_table, fmt_seconds, run_table


def _result(rate, p50, p99, completed=10):
    return {
        "rate": rate,
        "sent": 10,
        "achieved_rate": rate,
        "max_send_lag": 0.004,
        "completed": completed,
        "succeeded": completed,
        "latency": {"p50": p50, "p90": p99, "p99": p99, "max": p99, "mean": p50},
        "to_first_task": {"p50": p50 / 2},
        "throughput": rate,
    }


def test_fmt_seconds():
    assert fmt_seconds(0.1504) == "150 ms"
    assert fmt_seconds(6.0) == "6.00 s"
    assert fmt_seconds(None) == "-"


def test_run_table_rows():
    text = run_table([_result(2, 1.9, 2.9), {"rate": 5, "skipped": "backlog at 3/s"}])
    lines = text.splitlines()
    assert lines[0].startswith("| rate | sent |")
    assert lines[2].startswith("| 2/s | 10 | 2.00/s | 4 ms | 10 | 10 | 1.90 s |")
    assert "skipped: backlog at 3/s" in lines[3]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_compare_table_ratio():
    text = compare_table([2], {"stock": {2: _result(2, 2.0, 3.0)}, "kestra": {2: _result(2, 0.5, 1.5)}})
    assert text.splitlines()[0] == "| rate | figure | stock | kestra | stock/kestra |"
    assert "| 2/s | finished/sent | 10/10 | 10/10 |  |" in text
    assert "|  | latency p50 | 2.00 s | 500 ms | 4.00x |" in text
    assert "|  | latency p99 | 3.00 s | 1.50 s | 2.00x |" in text


def test_compare_table_three_stacks():
    text = compare_table(
        [2, 5],
        {
            "stock": {2: _result(2, 2.0, 3.0), 5: _result(5, 60.0, 70.0, completed=4)},
            "executor": {2: _result(2, 1.0, 1.5), 5: {"rate": 5, "skipped": "backlog at 2/s"}},
            "kestra": {2: _result(2, 0.5, 0.6), 5: _result(5, 0.3, 1.4)},
        },
    )
    lines = text.splitlines()
    assert lines[0] == "| rate | figure | stock | executor | kestra | stock/executor | stock/kestra |"
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "|  | latency p50 | 2.00 s | 1.00 s | 500 ms | 2.00x | 4.00x |" in lines
    assert "|  | latency p99 | 3.00 s | 1.50 s | 600 ms | 2.00x | 5.00x |" in lines
    assert "| 5/s | finished/sent | 4/10 | skipped (backlog at 2/s) | 10/10 |  |  |" in lines
    assert "|  | latency p50 | 60.00 s | - | 300 ms | - | 200.00x |" in lines


def test_compare_table_without_stock_uses_the_first_stack():
    text = compare_table([2], {"executor": {2: _result(2, 1.0, 2.0)}, "kestra": {2: _result(2, 0.5, 0.5)}})
    assert text.splitlines()[0] == "| rate | figure | executor | kestra | executor/kestra |"
    assert "|  | latency p50 | 1.00 s | 500 ms | 2.00x |" in text


def _chain(stack, p50, duration):
    return {
        "stack": stack,
        "runs": 5,
        "completed": 5,
        "per_link": {"p50": p50, "p90": p50 * 2, "max": p50 * 3},
        "duration": {"p50": duration},
    }


def test_chain_table_three_stacks():
    text = chain_table([_chain("stock", 1.0, 10.0), _chain("executor", 0.5, 5.0), _chain("kestra", 0.2, 2.0)])
    lines = text.splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| stock",
        "| executor",
        "| kestra",
        "| stock/executor",
        "| stock/kestra",
    ]
    assert lines[5] == "| stock/executor |  | 2.00x | 2.00x | 2.00x | 2.00x |"
    assert lines[6] == "| stock/kestra |  | 5.00x | 5.00x | 5.00x | 5.00x |"


def test_chain_table_one_stack_has_no_ratio():
    lines = chain_table([_chain("executor", 0.5, 5.0)]).splitlines()
    assert len(lines) == 3


def test_latency_figure_one_p50_and_one_p99_line_per_stack():
    series = {
        "stock": [_result(2, 1.9, 2.9), _result(5, 69, 77)],
        "executor": [_result(2, 0.9, 1.2), _result(5, 1.1, 3.0)],
        "kestra": [_result(2, 0.3, 0.6), {"rate": 5, "skipped": "backlog at 2/s"}],
    }
    lines = latency_figure(series).axes[0].get_lines()
    assert [line.get_label() for line in lines] == [
        "stock p50",
        "stock p99",
        "executor p50",
        "executor p99",
        "kestra p50",
        "kestra p99",
    ]
    assert list(lines[2].get_ydata()) == [0.9, 1.1]
    assert list(lines[5].get_ydata()) == [0.6]  # the skipped rate is not drawn
    colours = {line.get_label().split()[0]: line.get_color() for line in lines}
    assert colours == COLOURS
    assert len(set(colours.values())) == 3


@pytest.mark.parametrize(
    ("value", "low", "high", "label"),
    [
        (0.1, 0.2, 100.0, "0.1"),  # decades always
        (1.0, 0.2, 100.0, "1"),
        (100.0, 0.2, 100.0, "100"),
        (0.2, 0.2, 100.0, ""),  # two or more decades in view: nothing between them
        (0.3, 0.2, 100.0, ""),
        (5.0, 0.2, 100.0, ""),
        (0.2, 0.15, 5.0, "0.2"),  # one decade in view: 2, 3 and 5 times a decade
        (0.3, 0.15, 5.0, "0.3"),
        (0.5, 0.15, 5.0, "0.5"),
        (0.4, 0.15, 5.0, ""),
        (0.7, 0.15, 5.0, ""),
        (3.0, 0.15, 5.0, "3"),
        (0.4, 0.3, 0.35, "0.4"),  # under 0.4 of a decade: every tick
        (0.31, 0.3, 0.35, "0.31"),
    ],
)
def test_latency_tick_label(value, low, high, label):
    assert latency_tick_label(value, low, high) == label


def test_latency_figure_labels_only_decades_over_several_decades():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = latency_figure(
        {
            "stock": [_result(2, 1.9, 2.9), _result(5, 69, 77)],
            "kestra": [_result(2, 0.3, 0.6), _result(5, 0.4, 0.9)],
        }
    )
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    low, high = ax.get_ylim()

    def shown(labels):
        return [t.get_text() for t in labels if t.get_text() and low <= t.get_position()[1] <= high]

    assert shown(ax.get_yticklabels(minor=True)) == []
    assert shown(ax.get_yticklabels()) == ["1", "10", "100"]


def test_latency_plot_png(tmp_path):
    path = latency_plot(
        {
            "stock": [_result(2, 1.9, 2.9), _result(5, 69, 77)],
            "executor": [_result(2, 0.9, 1.2)],
            "kestra": [_result(2, 0.3, 0.6)],
        },
        tmp_path / "out" / "latency.png",
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))


def test_defer_plot_png_leaves_out_what_timed_out(tmp_path):
    from airflow_kestra_provider.bench.plot import defer_figure, defer_plot

    def many(count, loop, p50):
        return {
            "count": count,
            "idle_cpu_per_second": {"triggerer_loop": loop},
            "resume_lag": {"p50": p50, "p99": p50 * 2},
        }

    results = [
        {"stack": "stock", "many": [many(100, 0.008, 1.9), {"count": 10000, "error": "not started"}]},
        {"stack": "kestra", "many": [many(100, 0.002, 0.5), many(10000, 0.011, 9.8)]},
    ]
    cpu_ax, lag_ax = defer_figure(results).axes
    assert [list(line.get_xdata()) for line in cpu_ax.get_lines()] == [[100], [100, 10000]]
    assert list(cpu_ax.get_lines()[1].get_ydata()) == [2.0, 11.0]  # ms per s
    assert len(lag_ax.get_lines()) == 4  # p50 and p99 per stack
    data = defer_plot(results, tmp_path / "defer.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
