"""Throw-away stacks for ``bench compare`` and ``bench chain``: a fresh AIRFLOW_HOME and database each.

Every flavour gets the same DAGs, the same settings and the same database server; only the
executor and the scheduler and triggerer commands differ:

* "stock": LocalExecutor under ``airflow scheduler``, with ``airflow triggerer``;
* "executor": KestraExecutor under the stock ``airflow scheduler`` (the executor alone);
* "kestra": whatever ``airflow kestra standalone`` runs (executor, scheduler and triggerer
  commands taken from the standalone command, so the comparison follows it);
* "kestra-remote1", "kestra-remote2", "kestra-remote4": "kestra" with the embedded worker off and
  one, two or four ``airflow kestra worker`` processes running the tasks instead;
* "stock-celery", "kestra-celery": CeleryExecutor (one ``airflow celery worker``, a broker of the
  stack's own) under the stock scheduler and triggerer or the Kestra ones;
* "stock-edge", "kestra-edge": EdgeExecutor (one ``airflow edge worker``) under either pair.

The Celery and Edge stacks need the ``engines`` extra (apache-airflow-providers-celery and -edge3).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres
from airflow_kestra_provider.stack.engines import ENGINE_EXECUTORS, ProcessSpec, engine_parts
from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, StackConfig, free_port
from airflow_kestra_provider.stack.processes import airflow_argv
from airflow_kestra_provider.stack.stack import AirflowStack

FLAVOURS = (
    "stock",
    "executor",
    "kestra",
    "kestra-remote1",
    "kestra-remote2",
    "kestra-remote4",
    "stock-celery",
    "kestra-celery",
    "stock-edge",
    "kestra-edge",
)


@dataclass(frozen=True)
class Flavour:
    name: str
    executor: str
    scheduler_args: tuple[str, ...]
    remote_workers: int = 0  # ``airflow kestra worker`` processes, the embedded worker off
    engine: str = ""  # "celery" or "edge": the executor's broker and worker come with the stack
    triggerer_args: tuple[str, ...] = ("triggerer",)


def flavour(name: str) -> Flavour:
    if name == "stock":
        return Flavour("stock", "LocalExecutor", ("scheduler",))
    if name == "executor":
        return Flavour("executor", KESTRA_EXECUTOR, ("scheduler",))
    if name == "kestra":
        from airflow_kestra_provider.cli.standalone_command import (
            STANDALONE_EXECUTOR,
            STANDALONE_SCHEDULER_ARGS,
            STANDALONE_TRIGGERER_ARGS,
        )

        return Flavour(
            "kestra",
            STANDALONE_EXECUTOR,
            tuple(STANDALONE_SCHEDULER_ARGS),
            triggerer_args=tuple(STANDALONE_TRIGGERER_ARGS),
        )
    if name in ("kestra-remote1", "kestra-remote2", "kestra-remote4"):
        return replace(flavour("kestra"), name=name, executor=KESTRA_EXECUTOR, remote_workers=int(name[-1]))
    if name in ("stock-celery", "kestra-celery", "stock-edge", "kestra-edge"):
        scheduler, engine = name.split("-")
        return replace(flavour(scheduler), name=name, executor=ENGINE_EXECUTORS[engine], engine=engine)
    raise ValueError(f"unknown stack {name!r}: expected one of {', '.join(FLAVOURS)}")


class DatabaseServer:
    """A PostgreSQL server on which each stack gets a fresh database (embedded unless a URL is given)."""

    def __init__(self, work_dir: Path, server_url: str | None = None) -> None:
        self.work_dir = work_dir
        self.server_url = server_url
        self._embedded: EmbeddedPostgres | None = None

    def start(self) -> None:
        if self.server_url is None:
            self._embedded = EmbeddedPostgres(self.work_dir / "postgres")
            self.server_url = self._embedded.start()

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def _admin(self) -> Engine:
        assert self.server_url is not None, "start() first"
        return create_engine(self.server_url, isolation_level="AUTOCOMMIT", pool_size=1)

    def create(self, name: str) -> str:
        """Drop and create database ``name``; return its SQLAlchemy URL."""
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        assert self.server_url is not None
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()


def prepare_dags(
    work_dir: Path,
    source: Path,
    chain_length: int | None = None,
    extra_dags: Mapping[str, str] | None = None,
) -> Path:
    """Copy the example DAGs to ``work_dir/dags``; add ``kestra_bench_chain<N>`` if it is not
    there, and the ``extra_dags`` (file name -> source) a bench generates."""
    dags = work_dir / "dags"
    if dags.exists():
        shutil.rmtree(dags)
    shutil.copytree(source, dags, ignore=shutil.ignore_patterns("__pycache__"))
    if chain_length is not None and not (dags / f"kestra_bench_chain{chain_length}.py").exists():
        (dags / f"kestra_bench_chain{chain_length}.py").write_text(chain_dag_source(chain_length))
    for name, dag_source in (extra_dags or {}).items():
        (dags / name).write_text(dag_source)
    return dags


def chain_dag_source(length: int) -> str:
    return f'''"""Generated by airflow kestra bench chain: {length} no-op tasks in a chain."""

from airflow.sdk import chain, dag, task


@dag(dag_id="kestra_bench_chain{length}", schedule=None, catchup=False, tags=["kestra", "bench"])
def kestra_bench_chain{length}():
    @task
    def link() -> None:
        return None

    chain(*[link.override(task_id=f"link_{{i}}")() for i in range({length})])


kestra_bench_chain{length}()
'''


@contextmanager
def running_stack(
    kind: Flavour,
    database: DatabaseServer,
    work_dir: Path,
    dags_folder: Path,
    label: str,
    settings: Mapping[str, str],
    api_workers: int,
) -> Iterator[AirflowStack]:
    """Start one throw-away stack in ``work_dir/label`` on a fresh database; stop and drop it after."""
    db_name = f"kestra_bench_{label}".replace("-", "_")
    config = StackConfig(
        home=work_dir / label,
        sql_alchemy_conn=database.create(db_name),
        dags_folder=dags_folder,
        port=free_port(),
        executor=kind.executor,
        extra=settings,
    )
    parts = engine_parts(kind.engine or "local", config.home, config.sql_alchemy_conn, config.base_url)
    extra = {**settings, **parts.settings}
    workers = list(parts.workers)
    if kind.remote_workers:
        extra["AIRFLOW__KESTRA__EMBEDDED_WORKER"] = "False"
        for n in range(kind.remote_workers):
            name = f"kestra-worker-{n + 1}"
            # the scheduler serves this host's task logs
            argv = airflow_argv("kestra", "worker", "--name", name, "--skip-serve-logs")
            workers.append(ProcessSpec(name, tuple(argv)))
    config = replace(config, extra=extra)
    stack = AirflowStack(
        config,
        scheduler_args=kind.scheduler_args,
        triggerer_args=kind.triggerer_args,
        api_workers=api_workers,
        services=parts.services,
        workers=workers,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        database.drop(db_name)
