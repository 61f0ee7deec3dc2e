"""Real stacks for integration tests: embedded PostgreSQL plus Airflow components as subprocesses.

Start a stack once per test module (``start_stack`` in a module-scoped fixture), never per test.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres
from airflow_kestra_provider.stack.engines import engine_parts
from airflow_kestra_provider.stack.environment import StackConfig, free_port
from airflow_kestra_provider.stack.stack import AirflowStack

REPO = Path(__file__).resolve().parents[2]
DAGS_EXAMPLES = REPO / "dags_examples"

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.5,
    stack: AirflowStack | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value, and return it.

    After ``timeout`` seconds fail with ``message`` (a callable is called then, so it can show the
    state at that moment). With ``stack``, first fail at once if one of its components died.
    """
    deadline = time.monotonic() + timeout
    while True:
        if stack is not None:
            stack.raise_if_dead()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s: {message() if callable(message) else message}"
            )
        time.sleep(interval)


@pytest.fixture(scope="session")
def embedded_postgres(tmp_path_factory) -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL server for the whole test session."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    yield server
    server.stop()


def create_database(server: EmbeddedPostgres, name: str, template: str | None = None) -> str:
    """A fresh database on ``server`` (a copy of database ``template`` if given); returns its
    SQLAlchemy URL."""
    assert server._server is not None
    server._server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
    server._server.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template};" if template else ";"))
    return server.sqlalchemy_url().replace("/airflow?", f"/{name}?")


@pytest.fixture(scope="session")
def migrated_template(embedded_postgres, tmp_path_factory) -> str:
    """A database that ``airflow db migrate`` (Airflow's tables and every installed provider's,
    ours included) made once for the session; each stack of ``start_stack`` starts on a copy of
    it instead of migrating its own (about 5 s of CPU a stack)."""
    name = "stack_template"
    config = StackConfig(
        home=tmp_path_factory.mktemp(name),
        sql_alchemy_conn=create_database(embedded_postgres, name),
        dags_folder=DAGS_EXAMPLES,
    )
    AirflowStack(config).migrate()
    return name


StackFactory = Callable[..., AirflowStack]


@pytest.fixture(scope="module")
def start_stack(request, embedded_postgres, migrated_template, tmp_path_factory) -> Iterator[StackFactory]:
    """Factory for stacks that live until the end of the module, each with its own database.
    Threads may call it at once (stacks start side by side)."""
    stacks: list[AirflowStack] = []
    numbers = itertools.count()  # next() is atomic: each stack its own name and database

    def factory(
        executor: str = "LocalExecutor",
        scheduler_args: Sequence[str] = ("scheduler",),
        triggerer_args: Sequence[str] = ("triggerer",),
        dags_folder: Path = DAGS_EXAMPLES,
        extra: dict[str, str] | None = None,
        timeout: float = 180.0,
        base_path: str = "",
        engine: str | None = None,
    ) -> AirflowStack:
        """``engine`` ("celery", "edge", ...; see stack/engines.py) overrides ``executor`` and
        brings the executor's broker and worker."""
        name = f"{request.module.__name__.rsplit('.', 1)[-1]}_{next(numbers)}".lower()
        config = StackConfig(
            home=tmp_path_factory.mktemp(name),
            sql_alchemy_conn=create_database(embedded_postgres, name, template=migrated_template),
            dags_folder=dags_folder,
            port=free_port(),
            executor=executor,
            extra=extra or {},
            base_path=base_path,
        )
        parts = engine_parts(engine or "local", config.home, config.sql_alchemy_conn, config.base_url)
        if engine:
            config = replace(config, executor=parts.executor, extra={**parts.settings, **config.extra})
        stack = AirflowStack(
            config,
            scheduler_args=scheduler_args,
            triggerer_args=triggerer_args,
            services=parts.services,
            workers=parts.workers,
        )
        stacks.append(stack)
        stack.start(timeout=timeout, migrate=False)
        return stack

    yield factory
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="module")
def db(stack):
    """An engine on the database of the module's ``stack`` fixture, for checks in SQL."""
    engine = sa.create_engine(stack.config.sql_alchemy_conn)
    yield engine
    engine.dispose()
