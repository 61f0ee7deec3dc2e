"""``bench claims``: its cases, options, report tables, PostgreSQL addresses and the delay proxy."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from airflow_kestra_provider.bench import claims
from airflow_kestra_provider.bench.delay_proxy import DelayProxy, Upstream
from tests.unit.bench.test_bench_cli import _run

EMBEDDED = "postgresql+psycopg2://postgres@/airflow?host=/tmp/pg"


def test_cases_cover_every_poll_size_pollers_and_delay():
    plan = claims.ClaimPlan(poll_sizes=[1, 100], pollers=[1, 4], delays_ms=[0, 5], rows=10, duration=1)
    got = claims.cases(plan)
    assert len(got) == 8 and len(set(got)) == 8
    assert got[0] == claims.Case(1, 1, 0) and got[-1] == claims.Case(100, 4, 5)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--poll-sizes", "0"], "--poll-sizes must be between 1 and 10000, got 0"),
        (["--pollers", "4,x"], "--pollers: 'x' is not a whole number"),
        (["--delays", "-1"], "--delays must be between 0 and 1000, got -1"),
        (["--delays", ","], "--delays needs at least one delay in ms, e.g. 0,1,5"),
        (["--duration", "0"], "--duration must be > 0, got 0.0"),
    ],
)
def test_bad_options_give_one_line(extra, needle, capsys):
    code, err = _run(["kestra", "bench", "claims", *extra], capsys)
    assert code == 2
    assert err == [f"airflow kestra bench: error: {needle}"]


def test_postgres_address_of_a_unix_socket_and_of_tcp():
    assert claims.upstream_of(EMBEDDED) == Upstream(unix_path="/tmp/pg/.s.PGSQL.5432")
    assert claims.upstream_of("postgresql://u:p@db.example:6432/x") == Upstream(host="db.example", port=6432)
    assert claims.through(EMBEDDED, 7000) == "postgresql+psycopg2://postgres@127.0.0.1:7000/airflow"


def result(delay, pollers, size, rate, p50):
    return {
        "delay_ms": delay,
        "pollers": pollers,
        "poll_size": size,
        "claims_per_second": rate,
        "poll_p50_ms": p50,
        "poll_p99_ms": p50 * 2,
        "claimed": 100,
        "emptied": size == 100,
    }


def test_tables_by_delay_with_pollers_down_and_poll_sizes_across():
    report = {
        "rows": 1000,
        "duration": 5.0,
        "machine": {"cpu_model": "AMD EPYC", "cpus": 2},
        "results": [
            result(0, 1, 1, 900.0, 1.1),
            result(0, 1, 100, 12000.0, 8.0),
            result(5, 1, 1, 150.4, 6.5),
        ],
    }
    text = claims.claims_markdown(report)
    assert "AMD EPYC, 2 CPUs" in text
    assert "| 1 | 900 (1.1 ms) | 12,000 (8 ms) |" in text
    assert "| 1 | 150 (6.5 ms) | - |" in text
    rows = claims.claims_rows(report)
    assert rows[1]["claims/s"] == "12000" and rows[1]["claimed"] == "100 (queue emptied)"
    assert rows[2]["delay"] == "5 ms" and rows[2]["poll p99"] == "13 ms"


def echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def round_trips(port: int, count: int = 5) -> list[float]:
    times = []
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            started = time.monotonic()
            conn.sendall(f"ping {i}".encode())
            assert conn.recv(4096) == f"ping {i}".encode()
            times.append(time.monotonic() - started)
    return times


@pytest.mark.parametrize("delay", [0.0, 0.04])
def test_the_proxy_adds_the_round_trip_it_is_given(delay):
    server, port = echo_server()
    with server, DelayProxy(Upstream(host="127.0.0.1", port=port), delay) as proxy_port:
        times = round_trips(proxy_port)
    assert min(times) >= delay
    assert max(times) < delay + 0.5  # and nothing like another delay on top (a loaded machine may lag)
