"""Stock ``airflow scheduler`` vs ``airflow kestra scheduler``, same machine, same script.

Both stacks (each: api-server, dag-processor, triggerer, LocalExecutor and one of the two
schedulers, on its own database of one embedded PostgreSQL) run at the same time, so a shared
machine's background load hits both alike, and every measurement alternates between them:

1. no-op latency: the no-op DAG triggered at a fixed rate, ``--rounds`` rounds per scheduler,
   alternating; latency = ``end_date - queued_at`` of each run;
2. dag run creation: N generated ``@daily`` DAGs (paused at creation) are unpaused in one
   UPDATE, so all are due at the same instant; time until each has its run, then until all
   those runs finished. Stock first, then Kestra.

Not a benchmark framework (``airflow kestra bench`` is that)::

    python -m airflow_kestra_provider.scheduler.side_by_side --dags 1000 --runs 20 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
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
LIKE = f"{PREFIX}\\_%"


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


class Side:
    """One stack with one of the two schedulers, and its database."""

    def __init__(self, name: str, server: Any, work: Path, dags: int, reparse_interval: int) -> None:
        import sqlalchemy as sa

        from airflow_kestra_provider.stack.environment import StackConfig, free_port
        from airflow_kestra_provider.stack.stack import AirflowStack

        self.name = name
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
            port=free_port(),
            executor="LocalExecutor",
            extra={
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                # While the dag-processor re-writes the N DAGs it holds their rows locked and
                # both schedulers skip locked rows: no re-parse of the unchanged file meanwhile.
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(reparse_interval),
            },
        )
        self.stack = AirflowStack(config, scheduler_args=SCHEDULERS[name])
        self.engine = sa.create_engine(url)
        self.latencies: list[float] = []

    def scalar(self, sql: str) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql), {"like": LIKE}).scalar() or 0)

    def parsed(self, dags: int) -> bool:
        return (
            self.scalar("SELECT count(*) FROM serialized_dag WHERE dag_id LIKE :like") >= dags
            and self.scalar(f"SELECT count(*) FROM dag WHERE dag_id = '{NOOP}'") == 1
        )

    def noop_round(self, runs: int, rate: float) -> None:
        with self.stack.client() as client:
            client.unpause(NOOP)
            run_ids = []
            start = time.monotonic()
            for i in range(runs):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                run_ids.append(client.trigger(NOOP)["dag_run_id"])
            for run_id in run_ids:
                run = client.wait_run(NOOP, run_id, timeout=600)
                end = datetime.fromisoformat(run["end_date"])
                queued = datetime.fromisoformat(run["queued_at"])
                self.latencies.append((end - queued).total_seconds())

    def due_dags(self, dags: int) -> dict[str, Any]:
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            conn.execute(sa.text("UPDATE dag SET is_paused = false WHERE dag_id LIKE :like"), {"like": LIKE})
        created = _wait(
            lambda: self.scalar("SELECT count(DISTINCT dag_id) FROM dag_run WHERE dag_id LIKE :like") >= dags,
            3600,
            "a run for every due DAG",
        )
        finished = _wait(
            lambda: (
                self.scalar(
                    "SELECT count(*) FROM dag_run WHERE dag_id LIKE :like AND state IN ('success', 'failed')"
                )
                >= dags
            ),
            3600,
            "every due run finished",
        )
        duplicates = self.scalar(
            "SELECT count(*) FROM (SELECT dag_id FROM dag_run WHERE dag_id LIKE :like "
            "GROUP BY dag_id, logical_date HAVING count(*) > 1) d"
        )
        runs = self.scalar("SELECT count(*) FROM dag_run WHERE dag_id LIKE :like")
        return {
            "all_runs_created_s": round(created, 2),
            "then_all_runs_finished_s": round(finished, 2),
            "runs": runs,
            "duplicate_runs": duplicates,
        }

    def stop(self) -> None:
        self.engine.dispose()
        self.stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="no-op runs per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating no-op rounds per scheduler")
    parser.add_argument("--rate", type=float, default=1.0, help="no-op runs triggered per second")
    parser.add_argument(
        "--reparse-interval",
        type=int,
        default=3600,
        help="[dag_processor] min_file_process_interval of both stacks (s)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep stacks and logs here (new dir)")
    args = parser.parse_args(argv)

    from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kestra-sbs-") as tmp:
        work = Path(tmp)
        if args.workdir:
            work = args.workdir
            work.mkdir(parents=True)
        server = EmbeddedPostgres(work / "pg")
        server.start()
        sides: list[Side] = []
        try:
            for name in SCHEDULERS:
                side = Side(name, server, work, args.dags, args.reparse_interval)
                sides.append(side)
                side.stack.start()
            for side in sides:
                _wait(lambda side=side: side.parsed(args.dags), 1800, f"{side.name}: all DAGs parsed", 1.0)
            for _ in range(args.rounds):
                for side in sides:
                    side.noop_round(args.runs, args.rate)
            for side in sides:
                lat = side.latencies
                results[side.name] = {
                    "scheduler": " ".join(("airflow", *SCHEDULERS[side.name])),
                    "noop_runs": len(lat),
                    "noop_rate_per_s": args.rate,
                    "noop_p50_s": round(statistics.median(lat), 3),
                    "noop_p95_s": round(_percentile(lat, 0.95), 3),
                    "noop_max_s": round(max(lat), 3),
                    "due_dags": args.dags,
                }
                print(json.dumps(results[side.name]), flush=True)
            for side in sides:
                results[side.name].update(side.due_dags(args.dags))
                print(json.dumps(results[side.name]), flush=True)
        finally:
            for side in sides:
                side.stop()
            server.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
