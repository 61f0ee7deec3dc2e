"""One whole Airflow stack (database, api-server, dag-processor, triggerer, scheduler)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from airflow_kestra_provider.stack.api_client import AirflowApiClient
from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres
from airflow_kestra_provider.stack.engines import ProcessSpec
from airflow_kestra_provider.stack.environment import (
    ADMIN_USER,
    StackConfig,
    admin_password,
    stack_environment,
)
from airflow_kestra_provider.stack.processes import (
    RestartLimitExceeded,
    Supervisor,
    airflow_argv,
    run_airflow,
)

log = logging.getLogger(__name__)

HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class StackFailed(RuntimeError):
    """A component of the stack died or did not become healthy."""


class AirflowStack:
    """Starts the components of ``config`` as subprocesses and stops every one of them."""

    def __init__(
        self,
        config: StackConfig,
        scheduler_args: Sequence[str] = ("scheduler",),
        api_workers: int = 1,
        triggerer_args: Sequence[str] = ("triggerer",),
        services: Sequence[ProcessSpec] = (),
        workers: Sequence[ProcessSpec] = (),
    ) -> None:
        self.config = config
        self.scheduler_args = tuple(scheduler_args)
        self.triggerer_args = tuple(triggerer_args)
        self.api_workers = api_workers
        self.services = tuple(services)  # started first (a broker)
        self.workers = tuple(workers)  # started once the stack is healthy (Celery or Edge workers)
        self.env = stack_environment(config)
        self.supervisor = Supervisor(self.env, config.home / "logs" / "components")

    @property
    def password(self) -> str:
        return admin_password(self.config.home)

    def client(self) -> AirflowApiClient:
        return AirflowApiClient(self.config.base_url, ADMIN_USER, self.password)

    def migrate(self) -> None:
        run_airflow(self.env, "db", "migrate")

    def start(self, timeout: float = 180.0, migrate: bool = True) -> None:
        """Start the services, migrate the database (unless told it is migrated already), start
        all components, wait until the API reports them healthy, then start the workers."""
        self.config.home.mkdir(parents=True, exist_ok=True)
        self.password  # noqa: B018 - create the password file before the api-server reads it
        for service in self.services:
            self.supervisor.start(service.name, service.argv)
        if migrate:
            self.migrate()
        self.supervisor.start(
            "api-server",
            airflow_argv("api-server", "--port", str(self.config.port), "--workers", str(self.api_workers)),
        )
        self.supervisor.start("dag-processor", airflow_argv("dag-processor"))
        self.supervisor.start("triggerer", airflow_argv(*self.triggerer_args))
        self.supervisor.start("scheduler", airflow_argv(*self.scheduler_args))
        self.wait_healthy(timeout)
        for worker in self.workers:
            self.supervisor.start(worker.name, worker.argv)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                self.raise_if_dead()
                try:
                    client.wait_healthy(HEALTH_COMPONENTS, timeout=2.0)
                    return
                except Exception as err:
                    if time.monotonic() > deadline:
                        raise StackFailed(f"stack not healthy after {timeout:.0f}s: {err}") from err

    def health(self) -> dict[str, str]:
        """Status of each component as the API reports it, plus processes that died."""
        status: dict[str, str] = {}
        try:
            with self.client() as client:
                for name, body in client.health().items():
                    status[name] = str(body.get("status"))
        except Exception as err:
            status["api-server"] = f"unreachable ({type(err).__name__})"
        for component in self.supervisor.dead():
            status[component.name] = "exited"
        return status

    def raise_if_dead(self) -> None:
        dead = self.supervisor.dead()
        if dead:
            name = dead[0].name
            raise StackFailed(f"{name} exited; last lines of its log:\n{self.supervisor.log_tail(name)}")

    def restart_dead(self) -> list[str]:
        """Start every component that exited again, as a service manager would (Airflow's
        scheduler, dag-processor and triggerer exit when the database goes away); returns their
        names. A component that keeps exiting (beyond the supervisor's restart limit, by default
        5 restarts within 5 minutes) raises StackFailed."""
        restarted = []
        for component in self.supervisor.dead():
            try:
                self.supervisor.restart(component.name)
            except RestartLimitExceeded as err:
                raise StackFailed(str(err)) from err
            log.warning("%s exited; started it again", component.name)
            restarted.append(component.name)
        return restarted

    def stop(self) -> None:
        # Workers first, while the api-server and broker they report to still answer: an Edge
        # worker told to stop reports its jobs and itself offline before it exits.
        self.supervisor.stop_all(names={worker.name for worker in self.workers})
        self.supervisor.stop_all()


def resolve_database(
    home: Path, configured_conn: str | None, pg_dir: Path | None = None
) -> tuple[str, EmbeddedPostgres | None]:
    """The connection to use: ``configured_conn`` when it points at a server, else an embedded
    PostgreSQL under ``pg_dir`` (default ``home/kestra-postgres``), started here."""
    if configured_conn and not configured_conn.startswith("sqlite"):
        return configured_conn, None
    server = EmbeddedPostgres(pg_dir or home / "kestra-postgres")
    return server.start(), server
