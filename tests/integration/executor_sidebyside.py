"""Side-by-side latency of LocalExecutor and KestraExecutor, both under the stock scheduler.

Not a test (no ``test_`` prefix) and not the benchmark (``airflow kestra bench`` is): a quick,
reproducible comparison for docs/executor.md. For each executor it starts a fresh stack
(embedded PostgreSQL, api-server with 2 workers, dag-processor, triggerer, stock scheduler),
triggers RUNS runs of ``kestra_bench_noop`` at RATE runs/s through the REST API, waits for all,
and prints p50/p90/p99/max of ``end_date - queued_at`` and the achieved completion rate::

    .venv/bin/python -m tests.integration.executor_sidebyside --runs 60 --rate 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres
from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, StackConfig
from airflow_kestra_provider.stack.stack import AirflowStack
from tests.integration.conftest import DAGS_EXAMPLES, free_port

DAG_ID = "kestra_bench_noop"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    executor: str, runs: int, rate: float, parallelism: int, work: Path, pg: EmbeddedPostgres
) -> dict:
    name = "sbs_kestra" if executor == KESTRA_EXECUTOR else "sbs_local"
    assert pg._server is not None
    pg._server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
    pg._server.psql(f"CREATE DATABASE {name};")
    config = StackConfig(
        home=work / name,
        sql_alchemy_conn=pg.sqlalchemy_url().replace("/airflow?", f"/{name}?"),
        dags_folder=DAGS_EXAMPLES,
        port=free_port(),
        executor=executor,
        extra={
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )
    stack = AirflowStack(config, api_workers=2)
    engine = sa.create_engine(config.sql_alchemy_conn)
    try:
        stack.start(timeout=300)
        with stack.client() as client:
            client.wait_for_dag(DAG_ID, timeout=300)
            client.trigger(DAG_ID)  # warm-up run, excluded below
            time.sleep(10)
            started = time.monotonic()
            run_ids = []
            for i in range(runs):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                run_ids.append(client.trigger(DAG_ID)["dag_run_id"])
        deadline = time.monotonic() + 900
        query = sa.text(
            "SELECT state, queued_at, end_date FROM dag_run WHERE dag_id = :d AND run_id = ANY(:ids)"
        )
        while True:
            with engine.connect() as conn:
                rows = conn.execute(query, {"d": DAG_ID, "ids": run_ids}).all()
            if all(r.state in ("success", "failed") for r in rows) and len(rows) == runs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{executor}: runs not finished after 900 s")
            time.sleep(1)
        latencies = [(r.end_date - r.queued_at).total_seconds() for r in rows]
        first: datetime = min(r.queued_at for r in rows)
        last: datetime = max(r.end_date for r in rows)
        return {
            "executor": executor.rsplit(".", 1)[-1],
            "runs": runs,
            "failed": sum(r.state != "success" for r in rows),
            "p50": statistics.median(latencies),
            "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies),
            "achieved": runs / (last - first).total_seconds(),
        }
    finally:
        engine.dispose()
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--parallelism", type=int, default=16)
    parser.add_argument(
        "--order",
        choices=("local-first", "kestra-first"),
        default="local-first",
        help="which stack runs first",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kestra-sbs-") as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres(work / "pg")
        pg.start()
        try:
            results = [
                measure(executor, args.runs, args.rate, args.parallelism, work, pg)
                for executor in (
                    ("LocalExecutor", KESTRA_EXECUTOR)
                    if args.order == "local-first"
                    else (KESTRA_EXECUTOR, "LocalExecutor")
                )
            ]
        finally:
            pg.stop()
    print(f"\n{args.runs} runs of {DAG_ID} at {args.rate:g} runs/s, parallelism {args.parallelism}")
    print("| executor | runs | failed | p50 s | p90 s | p99 s | max s | achieved runs/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['executor']} | {r['runs']} | {r['failed']} | {r['p50']:.2f} | {r['p90']:.2f} | "
            f"{r['p99']:.2f} | {r['max']:.2f} | {r['achieved']:.2f} |"
        )


if __name__ == "__main__":
    main()
