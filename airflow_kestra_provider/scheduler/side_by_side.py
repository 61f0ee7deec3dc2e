"""Stock ``airflow scheduler`` vs ``airflow kestra scheduler``, same machine, same script.

For each scheduler it starts a fresh stack (embedded PostgreSQL, api-server, dag-processor,
triggerer, LocalExecutor) over a DAGs folder holding N generated ``@daily`` DAGs and the no-op
DAG, all paused at creation. Once every DAG is parsed it unpauses the N DAGs in one UPDATE (so
all are due at the same instant) and measures the time until each has its run, and until all
runs finished. Before that, while the N DAGs are still paused, it triggers the no-op DAG at a
fixed rate and reports run latency (``end_date - queued_at``). Not a benchmark framework: ``airflow kestra bench`` is that.

    python -m airflow_kestra_provider.scheduler.side_by_side --dags 1000 --runs 30 --rate 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_kestra_provider.scheduler.due_dags_file import write_due_dags

SCHEDULERS = {"stock": ("scheduler",), "kestra": ("kestra", "scheduler")}
PREFIX = "kestra_due"
NOOP = "kestra_bench_noop"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} not reached after {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - start


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    name: str, server: Any, work: Path, dags: int, runs: int, rate: float, reparse_interval: int
) -> dict[str, Any]:
    import sqlalchemy as sa

    from airflow_kestra_provider.stack.environment import StackConfig
    from airflow_kestra_provider.stack.stack import AirflowStack

    folder = work / f"dags_{name}"
    folder.mkdir()
    write_due_dags(folder, dags, PREFIX)
    shutil.copy(Path(__file__).resolve().parents[2] / "dags_examples" / f"{NOOP}.py", folder)
    assert server._server is not None
    server._server.psql(f"CREATE DATABASE sbs_{name};")
    url = server.sqlalchemy_url().replace("/airflow?", f"/sbs_{name}?")
    config = StackConfig(
        home=work / f"home_{name}",
        sql_alchemy_conn=url,
        dags_folder=folder,
        port=_free_port(),
        executor="LocalExecutor",
        extra={
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # While the dag-processor re-writes the N DAGs it holds their rows locked, and both
            # schedulers skip locked rows: keep it from re-parsing the unchanged file meanwhile.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(reparse_interval),
        },
    )
    stack = AirflowStack(config, scheduler_args=SCHEDULERS[name])
    engine = sa.create_engine(url)
    like = f"{PREFIX}\\_%"

    def scalar(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql), {"like": like}).scalar() or 0)

    try:
        stack.start()
        parse_s = _wait(
            lambda: (
                scalar("SELECT count(*) FROM serialized_dag WHERE dag_id LIKE :like") >= dags
                and scalar(f"SELECT count(*) FROM dag WHERE dag_id = '{NOOP}'") == 1
            ),
            900,
            "all DAGs parsed",
            1.0,
        )
        latencies = _noop_latencies(stack, runs, rate)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE dag SET is_paused = false WHERE dag_id LIKE :like"), {"like": like})
        created_s = _wait(
            lambda: scalar("SELECT count(DISTINCT dag_id) FROM dag_run WHERE dag_id LIKE :like") >= dags,
            1800,
            "a run for every due DAG",
        )
        finished_s = _wait(
            lambda: (
                scalar(
                    "SELECT count(*) FROM dag_run WHERE dag_id LIKE :like AND state IN ('success', 'failed')"
                )
                >= dags
            ),
            1800,
            "every due run finished",
        )
        duplicates = scalar(
            "SELECT count(*) FROM (SELECT dag_id FROM dag_run WHERE dag_id LIKE :like "
            "GROUP BY dag_id, logical_date HAVING count(*) > 1) d"
        )
    finally:
        engine.dispose()
        stack.stop()
    return {
        "scheduler": " ".join(("airflow", *SCHEDULERS[name])),
        "due_dags": dags,
        "reparse_interval_s": reparse_interval,
        "parse_s": round(parse_s, 1),
        "all_runs_created_s": round(created_s, 2),
        "then_all_runs_finished_s": round(finished_s, 2),
        "duplicate_runs": duplicates,
        "noop_runs": runs,
        "noop_rate_per_s": rate,
        "noop_p50_s": round(statistics.median(latencies), 3),
        "noop_p95_s": round(_percentile(latencies, 0.95), 3),
        "noop_max_s": round(max(latencies), 3),
    }


def _noop_latencies(stack: Any, runs: int, rate: float) -> list[float]:
    with stack.client() as client:
        client.wait_for_dag(NOOP, timeout=120)
        client.unpause(NOOP)
        run_ids = []
        start = time.monotonic()
        for i in range(runs):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            run_ids.append(client.trigger(NOOP)["dag_run_id"])
        latencies = []
        for run_id in run_ids:
            run = client.wait_run(NOOP, run_id, timeout=300)
            end = datetime.fromisoformat(run["end_date"])
            queued = datetime.fromisoformat(run["queued_at"])
            latencies.append((end - queued).total_seconds())
    return latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--schedulers", default="stock,kestra")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--reparse-interval",
        type=int,
        default=1800,
        help="[dag_processor] min_file_process_interval of both stacks (s)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep stacks and logs here (new dir)")
    args = parser.parse_args(argv)

    from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres

    results = []
    with tempfile.TemporaryDirectory(prefix="kestra-sbs-") as tmp:
        work = Path(tmp)
        if args.workdir:
            work = args.workdir
            work.mkdir(parents=True)
        server = EmbeddedPostgres(work / "pg")
        server.start()
        try:
            for name in args.schedulers.split(","):
                result = measure(name, server, work, args.dags, args.runs, args.rate, args.reparse_interval)
                print(json.dumps(result), flush=True)
                results.append(result)
        finally:
            server.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
