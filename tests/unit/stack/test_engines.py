"""What each engine adds to a stack, and the bench stacks built on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_kestra_provider.bench.stacks import FLAVOURS, flavour
from airflow_kestra_provider.stack import engines
from airflow_kestra_provider.stack.engines import engine_parts
from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR

CONN = "postgresql+psycopg2://postgres@127.0.0.1:5999/stack_db"
BASE_URL = "http://127.0.0.1:8123/airflow"


def test_local_and_kestra_add_nothing(tmp_path):
    for engine, executor in (("local", "LocalExecutor"), ("kestra", KESTRA_EXECUTOR)):
        parts = engine_parts(engine, tmp_path, CONN, BASE_URL)
        assert (parts.executor, parts.settings, parts.services, parts.workers) == (executor, {}, (), ())


def test_unknown_engine():
    with pytest.raises(
        ValueError, match="unknown engine 'dask': expected one of local, kestra, celery, edge"
    ):
        engine_parts("dask", Path("."), CONN, BASE_URL)


def test_celery_gets_a_redis_server_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "redis_server", lambda: "/usr/bin/redis-server")
    parts = engine_parts("celery", tmp_path, CONN, BASE_URL, concurrency=4)
    assert parts.executor == "CeleryExecutor"
    (redis,) = parts.services
    port = redis.argv[redis.argv.index("--port") + 1]
    assert port != "6379"  # never the machine's own Redis
    assert redis.argv[:3] == ("/usr/bin/redis-server", "--bind", "127.0.0.1")
    assert {"--save", "--appendonly"} <= set(redis.argv) and (tmp_path / "redis").is_dir()
    assert parts.settings == {
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql+psycopg2://postgres@127.0.0.1:5999/stack_db",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    }
    (worker,) = parts.workers
    assert worker.name == "celery-worker"
    assert worker.argv[3:] == ("celery", "worker", "--concurrency", "4", "--skip-serve-logs")


def test_celery_without_redis_uses_the_stacks_database_as_broker(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "redis_server", lambda: None)
    parts = engine_parts("celery", tmp_path, "postgresql://postgres@127.0.0.1:5999/stack_db", BASE_URL)
    assert parts.services == ()
    assert (
        parts.settings["AIRFLOW__CELERY__BROKER_URL"]
        == "sqla+postgresql+psycopg2://postgres@127.0.0.1:5999/stack_db"
    )


def test_edge_worker_talks_to_the_stacks_api_server(tmp_path):
    parts = engine_parts("edge", tmp_path, CONN, BASE_URL)
    assert parts.executor == "airflow.providers.edge3.executors.EdgeExecutor"
    assert parts.settings["AIRFLOW__EDGE__API_ENABLED"] == "True"
    assert parts.settings["AIRFLOW__EDGE__API_URL"] == f"{BASE_URL}/edge_worker/v1/rpcapi"
    (worker,) = parts.workers
    assert worker.name == "edge-worker" and worker.argv[3:5] == ("edge", "worker")


def test_missing_provider(monkeypatch):
    assert engines.missing_provider("local") is None
    assert engines.missing_provider("celery") is None  # the engines extra is installed for tests
    monkeypatch.setitem(engines.PROVIDERS, "celery", ("airflow.providers.no_such", "dist-name"))
    assert engines.missing_provider("celery") == "dist-name"


@pytest.mark.parametrize(
    ("name", "executor", "scheduler"),
    [
        ("stock-celery", "CeleryExecutor", ("scheduler",)),
        ("kestra-celery", "CeleryExecutor", ("kestra", "scheduler")),
        ("stock-edge", "airflow.providers.edge3.executors.EdgeExecutor", ("scheduler",)),
        ("kestra-edge", "airflow.providers.edge3.executors.EdgeExecutor", ("kestra", "scheduler")),
    ],
)
def test_engine_flavours(name, executor, scheduler):
    kind = flavour(name)
    assert name in FLAVOURS
    assert (kind.executor, kind.scheduler_args, kind.engine, kind.remote_workers) == (
        executor,
        scheduler,
        name.split("-")[1],
        0,
    )


def test_the_other_flavours_bring_no_engine():
    assert [(flavour(n).executor, flavour(n).engine) for n in ("stock", "executor", "kestra-remote2")] == [
        ("LocalExecutor", ""),
        (KESTRA_EXECUTOR, ""),
        (KESTRA_EXECUTOR, ""),
    ]
