"""The runners' Execution API client keeps retrying for its window, with Airflow's policy."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from airflow.sdk.api.client import ServerResponseError

from airflow_kestra_provider.worker.api_client import MAX_WAIT, RetryWindowClient

TI_ID = uuid.UUID("01a22644-3d01-7686-8410-a9454111a939")
DATABASE_ERROR = {
    "detail": {"reason": "Database error", "message": "Serious error when handling your request"}
}


class FlakyApi:
    """An api-server that fails the first ``failures`` requests (500, or a refused connection)."""

    def __init__(self, failures: int, refuse: bool = False, status: int = 500) -> None:
        self.failures = failures
        self.refuse = refuse
        self.status = status
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if len(self.requests) <= self.failures:
            if self.refuse:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            return httpx.Response(self.status, json=DATABASE_ERROR)
        return httpx.Response(204)


def make_client(api: FlakyApi, window: float, sleeps: list[float] | None = None, nap: float = 0.0):
    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        time.sleep(nap)

    return RetryWindowClient(
        retry_window=window,
        sleep=sleep,
        base_url="http://api.test/execution/",
        token="workload-token",
        transport=httpx.MockTransport(api),
    )


def test_retries_past_airflows_attempts_within_the_window():
    # Airflow's client gives up after [workers] execution_api_retries (5) attempts.
    api = FlakyApi(failures=8)
    sleeps: list[float] = []
    with make_client(api, window=600, sleeps=sleeps) as client:
        client.task_instances.heartbeat(TI_ID, pid=123)
    assert api.requests == [f"PUT /execution/task-instances/{TI_ID}/heartbeat"] * 9
    # Airflow's back-off between attempts (random exponential from [workers]
    # execution_api_retry_wait_min = 1 s), but never longer than MAX_WAIT.
    assert len(sleeps) == 8
    assert sleeps[0] == 1.0
    assert all(1.0 <= s <= MAX_WAIT for s in sleeps)


def test_waits_at_most_airflows_wait_max_when_lower(monkeypatch):
    monkeypatch.setenv("AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX", "3")
    api = FlakyApi(failures=12)
    sleeps: list[float] = []
    with make_client(api, window=600, sleeps=sleeps) as client:
        client.task_instances.heartbeat(TI_ID, pid=123)
    assert len(sleeps) == 12
    assert all(1.0 <= s <= 3.0 for s in sleeps)


def test_refused_connections_are_retried_too():
    api = FlakyApi(failures=7, refuse=True)
    with make_client(api, window=600, sleeps=[]) as client:
        client.task_instances.heartbeat(TI_ID, pid=123)
    assert len(api.requests) == 8


def test_gives_up_when_the_window_has_passed():
    api = FlakyApi(failures=10**6)
    started = time.monotonic()
    with make_client(api, window=0.5, nap=0.05) as client, pytest.raises(ServerResponseError) as err:
        client.task_instances.heartbeat(TI_ID, pid=123)
    elapsed = time.monotonic() - started
    assert err.value.response.status_code == 500
    assert elapsed >= 0.5
    assert 5 <= len(api.requests) < 100


def test_a_short_window_still_makes_airflows_attempts():
    api = FlakyApi(failures=10**6)
    with make_client(api, window=0, sleeps=[]) as client, pytest.raises(ServerResponseError):
        client.task_instances.heartbeat(TI_ID, pid=123)
    assert len(api.requests) == 5  # [workers] execution_api_retries


def test_client_errors_are_not_retried():
    api = FlakyApi(failures=1, status=409)
    with make_client(api, window=600, sleeps=[]) as client, pytest.raises(ServerResponseError) as err:
        client.task_instances.heartbeat(TI_ID, pid=123)
    assert err.value.response.status_code == 409
    assert len(api.requests) == 1
