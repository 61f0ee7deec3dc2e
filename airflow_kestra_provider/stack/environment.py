"""Environment (``AIRFLOW__*`` variables) for the processes of one Airflow stack."""

from __future__ import annotations

import base64
import configparser
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

KESTRA_EXECUTOR = "airflow_kestra_provider.executors.kestra_executor.KestraExecutor"
ADMIN_USER = "admin"


@dataclass
class StackConfig:
    """What one stack runs against: its home, database, DAGs, port and executor; ``base_path``
    ("/airflow", say) serves the UI and the APIs under that path of ``[api] base_url``."""

    home: Path
    sql_alchemy_conn: str
    dags_folder: Path
    port: int = 8080
    executor: str = KESTRA_EXECUTOR
    extra: Mapping[str, str] = field(default_factory=dict)
    base_path: str = ""

    @property
    def base_url(self) -> str:
        """Where the api-server answers, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}{self.base_path.rstrip('/')}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_environment(config: StackConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment each component of ``config``'s stack is started with."""
    env = dict(os.environ if base is None else base)
    fernet_key = _fernet_key(config.home, env)
    # A stack is self-contained: drop the caller's Airflow settings so they cannot leak in.
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW__")}
    env.update(
        {
            "AIRFLOW_HOME": str(config.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": config.sql_alchemy_conn,
            "AIRFLOW__CORE__EXECUTOR": config.executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__API__PORT": str(config.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"{config.base_url}/",
            "AIRFLOW__API_AUTH__JWT_SECRET": _stable_secret(config.home, "jwt_secret"),
            "AIRFLOW__API__SECRET_KEY": _stable_secret(config.home, "secret_key"),
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
    )
    env.update(config.extra)
    return env


def _stable_secret(home: Path, name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    """A random secret generated once per ``home`` and kept there, shared by all components
    (by default 64 characters: enough for HS512)."""
    path = home / f".kestra-{name}"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _fernet_key(home: Path, env: Mapping[str, str]) -> str:
    """The key every component encrypts trigger arguments, connections and variables with.

    The caller's ``AIRFLOW__CORE__FERNET_KEY``, else the ``[core] fernet_key`` of
    ``home/airflow.cfg`` (data already encrypted with it stays readable), else one generated
    once for ``home``. Without it each component started on a home with no ``airflow.cfg``
    would generate a key of its own and write the file at once: what one of them encrypts (a
    watcher's trigger, written by the dag-processor) another could not read (the triggerer).
    """
    if env.get("AIRFLOW__CORE__FERNET_KEY"):
        return env["AIRFLOW__CORE__FERNET_KEY"]
    cfg = configparser.ConfigParser(interpolation=None)
    with contextlib.suppress(OSError, configparser.Error):
        cfg.read(home / "airflow.cfg")
        if cfg.get("core", "fernet_key", fallback="").strip():
            return cfg.get("core", "fernet_key").strip()
    return _stable_secret(
        home, "fernet_key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )


def admin_password(home: Path) -> str:
    """The admin password of the stack in ``home``: generated once and stored where
    Airflow's SimpleAuthManager reads it."""
    path = home / "simple_auth_manager_passwords.json.generated"
    passwords: dict[str, str] = {}
    if path.exists() and path.read_text().strip():
        passwords = json.loads(path.read_text())
    if ADMIN_USER not in passwords:
        passwords[ADMIN_USER] = secrets.token_urlsafe(12)
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords) + "\n")
        path.chmod(0o600)
    return passwords[ADMIN_USER]
