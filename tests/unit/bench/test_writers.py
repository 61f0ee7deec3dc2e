from __future__ import annotations

import struct

from airflow_kestra_provider.bench.plot import DPI, HEIGHT_IN, WIDTH_IN, latency_plot
from airflow_kestra_provider.bench.table import compare_table, fmt_seconds, run_table


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
    text = compare_table([2], {2: _result(2, 2.0, 3.0)}, {2: _result(2, 0.5, 1.5)})
    assert "| 2/s | finished/sent | 10/10 | 10/10 |  |" in text
    assert "|  | latency p50 | 2.00 s | 500 ms | 4.00x |" in text
    assert "|  | latency p99 | 3.00 s | 1.50 s | 2.00x |" in text


def test_latency_plot_png(tmp_path):
    path = latency_plot(
        {"stock": [_result(2, 1.9, 2.9), _result(5, 69, 77)], "ours": [_result(2, 0.3, 0.6)]},
        tmp_path / "out" / "latency.png",
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))
