"""``airflow kestra standalone``: the whole stack on one machine, embedded PostgreSQL by default."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from airflow_kestra_provider import settings
from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgresMissing
from airflow_kestra_provider.stack.environment import ADMIN_USER, KESTRA_EXECUTOR, StackConfig
from airflow_kestra_provider.stack.stack import AirflowStack, StackFailed, resolve_database

STANDALONE_EXECUTOR = KESTRA_EXECUTOR
STANDALONE_SCHEDULER_ARGS: tuple[str, ...] = ("kestra", "scheduler")
STANDALONE_TRIGGERER_ARGS: tuple[str, ...] = ("kestra", "triggerer")


class _StopRequested(BaseException):
    """SIGTERM or SIGINT arrived: stop every child and the database.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it.
    """


def example_dags_folder() -> Path:
    """The ``dags_examples`` folder: inside the installed package, or beside it in a checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "dags_examples", package_dir.parent / "dags_examples"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("dags_examples folder not found; pass --dags-folder")


DAGS_FOLDER_ENV = "AIRFLOW__CORE__DAGS_FOLDER"


def choose_dags_folder(
    cli_value: str | None, configured: str | None, default: str | None, from_env: bool
) -> Path:
    """The DAGs folder of the stack: ``--dags-folder`` if given; else ``[core] dags_folder`` when
    the user set it; else the example DAGs.

    ``configured`` is the value of ``[core] dags_folder`` and ``default`` Airflow's default for it
    (``$AIRFLOW_HOME/dags``). Airflow writes that default into every airflow.cfg it generates, so a
    value from airflow.cfg counts as set only when it differs from the default; one from
    ``AIRFLOW__CORE__DAGS_FOLDER`` (``from_env``) always counts.
    """
    if cli_value:
        return Path(cli_value).expanduser().resolve()
    if configured and (from_env or not _same_path(configured, default)):
        return Path(configured).expanduser().resolve()
    return example_dags_folder()


def _same_path(a: str, b: str | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def configured_dags_folder(cli_value: str | None) -> Path:
    """:func:`choose_dags_folder` with ``[core] dags_folder`` read from Airflow's configuration."""
    from airflow.configuration import conf

    return choose_dags_folder(
        cli_value,
        conf.get("core", "dags_folder", fallback=None),
        conf.get_default_value("core", "dags_folder"),
        from_env=bool(os.environ.get(DAGS_FOLDER_ENV)),
    )


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit code 1 (as for a stack that fails)."""
    print(f"airflow kestra standalone: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def standalone(args: argparse.Namespace) -> None:
    from airflow.configuration import AIRFLOW_HOME, conf

    try:
        settings.validate_all()
    except settings.KestraConfigError as err:
        _fail(str(err))
    home = Path(AIRFLOW_HOME)
    port = args.port or settings.standalone_port()
    try:
        dags_folder = configured_dags_folder(args.dags_folder)
    except FileNotFoundError as err:
        _fail(str(err))
    configured_conn = conf.get("database", "sql_alchemy_conn", fallback="")

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    database = None
    stack: AirflowStack | None = None
    exit_code = 0
    try:
        print(f"AIRFLOW_HOME {home}", flush=True)
        db_url, database = resolve_database(home, configured_conn, settings.embedded_postgres_dir())
        where = f"embedded PostgreSQL in {database.data_dir}" if database else "configured database"
        print(f"database: {where}", flush=True)
        config = StackConfig(
            home=home,
            sql_alchemy_conn=db_url,
            dags_folder=dags_folder,
            port=port,
            executor=STANDALONE_EXECUTOR,
        )
        stack = AirflowStack(
            config,
            scheduler_args=STANDALONE_SCHEDULER_ARGS,
            triggerer_args=STANDALONE_TRIGGERER_ARGS,
            api_workers=2,
        )
        print(
            "migrating the database and starting api-server, dag-processor, triggerer, scheduler ...",
            flush=True,
        )
        stack.start()
        print(
            f"\nAirflow is ready: {config.base_url}\n"
            f"  login: {ADMIN_USER} / {stack.password}\n"
            f"  DAGs folder: {dags_folder}\n"
            f"  component logs: {stack.supervisor.log_dir}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        _watch(stack)
    except _StopRequested as stop:
        print(f"\n{stop}: stopping ...", flush=True)
    except StackFailed as err:
        print(f"\n{err}", file=sys.stderr, flush=True)
        exit_code = 1
    except EmbeddedPostgresMissing as err:
        print(f"airflow kestra standalone: error: {err}", file=sys.stderr, flush=True)
        exit_code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        started = stack is not None or database is not None
        if stack is not None:
            stack.stop()
        if database is not None:
            database.stop()
        if started:
            print("stopped: no component or database process left", flush=True)
    sys.exit(exit_code)


def _watch(stack: AirflowStack, interval: float = 5.0) -> None:
    """Print each component's health when it changes; start a component that exited again
    (Airflow's scheduler, dag-processor and triggerer exit when the database is unreachable);
    fail when one keeps exiting."""
    last: dict[str, str] = {}
    while True:
        for name in stack.restart_dead():
            print(
                f"[{time.strftime('%H:%M:%S')}] {name} exited; started it again "
                f"(log: {stack.supervisor.log_dir / (name + '.log')})",
                flush=True,
            )
        health = stack.health()
        if health != last:
            line = "  ".join(f"{name}={status}" for name, status in sorted(health.items()))
            print(f"[{time.strftime('%H:%M:%S')}] health: {line}", flush=True)
            last = health
        time.sleep(interval)
