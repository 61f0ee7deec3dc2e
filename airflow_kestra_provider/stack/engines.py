"""The executor a stack runs tasks with, and the broker and worker processes that executor needs.

* "local": LocalExecutor, nothing beside the scheduler;
* "kestra": KestraExecutor with its embedded worker;
* "celery": CeleryExecutor (apache-airflow-providers-celery) with one ``airflow celery worker``
  and a broker of the stack's own: a ``redis-server`` on a free loopback port where the binary is
  installed, else kombu's SQLAlchemy transport on the stack's database;
* "edge": EdgeExecutor (apache-airflow-providers-edge3) with one ``airflow edge worker`` talking
  to the stack's api-server.

The Celery and Edge providers are the ``engines`` extra, not dependencies of this package.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from airflow_kestra_provider.stack.processes import airflow_argv

CELERY_EXECUTOR = "CeleryExecutor"
EDGE_EXECUTOR = "airflow.providers.edge3.executors.EdgeExecutor"
ENGINE_EXECUTORS = {
    "local": "LocalExecutor",
    "kestra": KESTRA_EXECUTOR,
    "celery": CELERY_EXECUTOR,
    "edge": EDGE_EXECUTOR,
}
# Task slots of the Celery or Edge worker: LocalExecutor's default parallelism on 2 cores is 32,
# but a worker process per slot costs ~100 MB; 8 is both providers' own default.
WORKER_CONCURRENCY = 8


@dataclass(frozen=True)
class ProcessSpec:
    """A process started beside the Airflow components: ``name`` and its command line."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class EngineParts:
    """What one engine adds to a stack: settings, services started before Airflow's components
    (a broker) and workers started once the stack is healthy."""

    executor: str
    settings: dict[str, str] = field(default_factory=dict)
    services: tuple[ProcessSpec, ...] = ()
    workers: tuple[ProcessSpec, ...] = ()


PROVIDERS = {
    "celery": ("airflow.providers.celery", "apache-airflow-providers-celery"),
    "edge": ("airflow.providers.edge3", "apache-airflow-providers-edge3"),
}


def missing_provider(engine: str) -> str | None:
    """The distribution ``engine`` needs when it is not installed, else None."""
    if engine not in PROVIDERS:
        return None
    module, distribution = PROVIDERS[engine]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else distribution


def redis_server() -> str | None:
    """Path of the ``redis-server`` binary, or None."""
    return shutil.which("redis-server")


def engine_parts(
    engine: str,
    home: Path,
    sql_alchemy_conn: str,
    base_url: str,
    concurrency: int = WORKER_CONCURRENCY,
) -> EngineParts:
    """The executor, settings and extra processes of ``engine`` for a stack whose home is ``home``,
    whose database is ``sql_alchemy_conn`` and whose api-server answers at ``base_url``."""
    if engine == "celery":
        return _celery(home, sql_alchemy_conn, concurrency)
    if engine == "edge":
        return _edge(base_url, concurrency)
    if engine in ENGINE_EXECUTORS:
        return EngineParts(ENGINE_EXECUTORS[engine])
    raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINE_EXECUTORS)}")


def _celery(home: Path, sql_alchemy_conn: str, concurrency: int) -> EngineParts:
    binary = redis_server()
    services: tuple[ProcessSpec, ...] = ()
    if binary is not None:
        port = free_port()
        broker_url = f"redis://127.0.0.1:{port}/0"
        data = home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        # Nothing on disk: a throw-away broker, as the stack's database is throw-away.
        argv = (binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no")
        services = (ProcessSpec("redis", (*argv, "--dir", str(data))),)
    else:
        broker_url = "sqla+" + _psycopg2_url(sql_alchemy_conn)
    worker = ["celery", "worker", "--concurrency", str(concurrency), "--skip-serve-logs"]
    settings = {
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _psycopg2_url(sql_alchemy_conn),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
    }
    return EngineParts(
        CELERY_EXECUTOR,
        settings,
        services,
        (ProcessSpec("celery-worker", tuple(airflow_argv(*worker))),),
    )


def _edge(base_url: str, concurrency: int) -> EngineParts:
    worker = ["edge", "worker", "--concurrency", str(concurrency), "--edge-hostname", "edge-worker-1"]
    settings = {
        "AIRFLOW__EDGE__API_ENABLED": "True",
        "AIRFLOW__EDGE__API_URL": f"{base_url}/edge_worker/v1/rpcapi",
        "AIRFLOW__EDGE__WORKER_CONCURRENCY": str(concurrency),
    }
    return EngineParts(
        EDGE_EXECUTOR, settings, (), (ProcessSpec("edge-worker", tuple(airflow_argv(*worker))),)
    )


def _psycopg2_url(sql_alchemy_conn: str) -> str:
    """``sql_alchemy_conn`` with the psycopg2 driver, which Celery's result backend and kombu use."""
    scheme, rest = sql_alchemy_conn.split("://", 1)
    return f"{scheme.split('+', 1)[0]}+psycopg2://{rest}"
