"""The deployment a bench runs against: its REST API (to trigger) and metadata database (to read)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from airflow_kestra_provider.bench.collect import (
    DatabaseUnreachable,
    RunCollector,
    check_database,
    make_engine,
)
from airflow_kestra_provider.stack.api_client import AirflowApiClient, AirflowApiError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

ENV_API_URL = "AIRFLOW_KESTRA_BENCH_API_URL"
ENV_USERNAME = "AIRFLOW_KESTRA_BENCH_USERNAME"
ENV_PASSWORD = "AIRFLOW_KESTRA_BENCH_PASSWORD"
ENV_DB_URL = "AIRFLOW_KESTRA_BENCH_DB_URL"
SEND_TIMEOUT = 120.0


class BenchUsageError(Exception):
    """Bad arguments or an unreachable deployment: reported as one line, exit code 2."""


@dataclass
class Endpoints:
    api_url: str
    username: str
    password: str
    db_url: str


def resolve_endpoints(
    api_url: str | None, username: str | None, password: str | None, db_url: str | None
) -> Endpoints:
    """Options first, then ``AIRFLOW_KESTRA_BENCH_*`` variables, then the current Airflow config."""
    from airflow.configuration import AIRFLOW_HOME, conf

    api = api_url or os.environ.get(ENV_API_URL) or conf.get("api", "base_url", fallback="") or ""
    if not api:
        api = f"http://localhost:{conf.get('api', 'port', fallback='8080')}"
    user = username or os.environ.get(ENV_USERNAME) or "admin"
    secret = password or os.environ.get(ENV_PASSWORD)
    if secret is None:
        default_file = Path(AIRFLOW_HOME) / "simple_auth_manager_passwords.json.generated"
        path = Path(
            conf.get("core", "simple_auth_manager_passwords_file", fallback="") or default_file
        ).expanduser()
        secret = _password_from_file(path, user)
    if secret is None:
        raise BenchUsageError(f"no password for API user {user!r}: pass --password or set {ENV_PASSWORD}")
    database = db_url or os.environ.get(ENV_DB_URL) or conf.get("database", "sql_alchemy_conn", fallback="")
    if not database:
        raise BenchUsageError("no metadata database: pass --db-url or set [database] sql_alchemy_conn")
    return Endpoints(api.rstrip("/"), user, secret, database)


def _password_from_file(path: Path, user: str) -> str | None:
    """The SimpleAuthManager password of ``user`` (the file the api-server generates), if any."""
    try:
        passwords = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = passwords.get(user) if isinstance(passwords, dict) else None
    return str(value) if value else None


class Target:
    """A checked connection to one deployment: API logged in, database readable, DAG known."""

    def __init__(self, endpoints: Endpoints, dag_id: str) -> None:
        self.endpoints = endpoints
        self.dag_id = dag_id
        self.engine: Engine = make_engine(endpoints.db_url)
        # Generous timeout: a trigger the API is slow to accept is a measurement, not an error.
        self.client = AirflowApiClient(
            endpoints.api_url, endpoints.username, endpoints.password, timeout=SEND_TIMEOUT
        )

    def check(self, require_unpaused: bool = True) -> None:
        """Raise :class:`BenchUsageError` with one line unless everything is reachable."""
        try:
            check_database(self.engine)
        except DatabaseUnreachable as err:
            raise BenchUsageError(str(err)) from None
        api = self.endpoints.api_url
        try:
            self.client.login()
        except httpx.HTTPError as err:
            raise BenchUsageError(
                f"cannot reach the Airflow API at {api}: {type(err).__name__}: {err}"
            ) from None
        except AirflowApiError as err:
            raise BenchUsageError(f"cannot log in to the Airflow API at {api}: {err}") from None
        try:
            dag = self.client.get_dag(self.dag_id)
        except AirflowApiError as err:
            if "HTTP 404" in str(err):
                raise BenchUsageError(f"unknown DAG id {self.dag_id!r} at {api}") from None
            raise BenchUsageError(f"cannot read DAG {self.dag_id!r} at {api}: {err}") from None
        except httpx.HTTPError as err:
            raise BenchUsageError(
                f"cannot reach the Airflow API at {api}: {type(err).__name__}: {err}"
            ) from None
        if require_unpaused and dag.get("is_paused"):
            raise BenchUsageError(
                f"DAG {self.dag_id!r} is paused: unpause it (airflow dags unpause {self.dag_id})"
            )

    def trigger(self, run_id: str) -> None:
        self.client.trigger(self.dag_id, run_id=run_id)

    def collector(self, prefix: str) -> RunCollector:
        return RunCollector(self.engine, self.dag_id, prefix)

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()
