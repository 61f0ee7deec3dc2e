"""Build Airflow ``ExecuteTask`` workloads from claimed rows (no ORM objects, no queries)."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airflow_kestra_provider.queue.claims import ClaimedTask

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.tokens import JWTGenerator
    from airflow.executors.workloads import ExecuteTask


class WorkloadBuilder:
    """Signs each workload's token with Airflow's JWT generator, as the scheduler does."""

    def __init__(self, generator: JWTGenerator | None = None) -> None:
        from airflow.utils.helpers import log_filename_template_renderer

        self.generator = generator if generator is not None else make_jwt_generator()
        self.render_log_path = log_filename_template_renderer()

    def build(self, row: ClaimedTask) -> ExecuteTask:
        from airflow.executors.workloads import BundleInfo, ExecuteTask
        from airflow.executors.workloads.task import TaskInstanceDTO

        if not row.relative_fileloc:
            raise ValueError(f"DAG {row.dag_id!r} has no relative_fileloc; has it been parsed?")
        ti = TaskInstanceDTO(
            id=uuid.UUID(row.id),
            task_id=row.task_id,
            dag_id=row.dag_id,
            run_id=row.run_id,
            try_number=row.try_number,
            dag_version_id=uuid.UUID(row.dag_version_id),
            map_index=row.map_index,
            hostname=row.hostname,
            context_carrier=row.context_carrier,
            queue=row.queue,
            pool_slots=row.pool_slots,
            priority_weight=row.priority_weight,
        )
        return ExecuteTask(
            ti=ti,
            dag_rel_path=Path(row.relative_fileloc),
            token=ExecuteTask.generate_token(row.id, self.generator),
            log_path=self.render_log_path(ti=_log_fields(row)),
            bundle_info=BundleInfo(name=row.bundle_name, version=row.bundle_version),
        )


def make_jwt_generator() -> JWTGenerator:
    """Airflow's workload token generator, configured as executors configure it."""
    from airflow.api_fastapi.auth.tokens import JWTGenerator, get_signing_args
    from airflow.configuration import conf

    return JWTGenerator(
        valid_for=conf.getint("execution_api", "jwt_expiration_time"),
        audience=conf.get_mandatory_list_value("execution_api", "jwt_audience")[0],
        issuer=conf.get("api_auth", "jwt_issuer", fallback=None),
        **get_signing_args(make_secret_key_if_needed=False),
    )


def _log_fields(row: ClaimedTask) -> Any:
    """What the log filename template reads from ``ti``."""
    return SimpleNamespace(
        dag_id=row.dag_id,
        task_id=row.task_id,
        run_id=row.run_id,
        map_index=row.map_index,
        try_number=row.try_number,
        logical_date=row.logical_date,
    )
