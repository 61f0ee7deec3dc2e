from __future__ import annotations

import datetime
import uuid

import jwt
import pytest

from airflow_kestra_provider.queue.claims import ClaimedTask
from airflow_kestra_provider.worker.workloads import WorkloadBuilder, make_jwt_generator


def claimed(**overrides) -> ClaimedTask:
    values = dict(
        id=str(uuid.uuid4()),
        task_id="noop",
        dag_id="kestra_bench_noop",
        run_id="manual__1",
        map_index=-1,
        try_number=2,
        dag_version_id=str(uuid.uuid4()),
        hostname=None,
        context_carrier={},
        queue="default",
        pool_slots=1,
        priority_weight=3,
        relative_fileloc="kestra_bench_noop.py",
        bundle_name="dags-folder",
        bundle_version=None,
        logical_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    values.update(overrides)
    return ClaimedTask(**values)  # type: ignore[arg-type]


def test_workload_from_claimed_row(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "a-test-secret-that-is-long-enough-for-hs512-signing-0123456789-abcdef",
    )
    row = claimed()
    workload = WorkloadBuilder(make_jwt_generator()).build(row)
    assert str(workload.ti.id) == row.id
    assert workload.ti.key.try_number == 2
    assert str(workload.dag_rel_path) == "kestra_bench_noop.py"
    assert workload.bundle_info.name == "dags-folder"
    assert workload.log_path == "dag_id=kestra_bench_noop/run_id=manual__1/task_id=noop/attempt=2.log"
    claims = jwt.decode(workload.token, options={"verify_signature": False})
    assert claims["sub"] == row.id
    assert claims["scope"] == "workload"


def test_unparsed_dag_is_refused(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "a-test-secret-that-is-long-enough-for-hs512-signing-0123456789-abcdef",
    )
    builder = WorkloadBuilder(make_jwt_generator())
    with pytest.raises(ValueError, match="kestra_bench_noop"):
        builder.build(claimed(relative_fileloc=None))
