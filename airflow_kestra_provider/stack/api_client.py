"""A small client of Airflow's public REST API (v2): login, health, trigger and read dag runs,
clear task instances and set their state."""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowApiError(RuntimeError):
    """The API answered with an error or did not answer in time."""


class AirflowApiClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------
    def login(self) -> None:
        response = self._http.post(
            "/auth/token", json={"username": self._username, "password": self._password}
        )
        if response.status_code not in (200, 201):
            raise AirflowApiError(f"login failed: HTTP {response.status_code} {response.text[:200]}")
        self._token = response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._token is None:
            self.login()
        extra_headers = kwargs.pop("headers", {})
        headers = {**extra_headers, "Authorization": f"Bearer {self._token}"}
        response = self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401:
            self.login()
            headers = {**extra_headers, "Authorization": f"Bearer {self._token}"}
            response = self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    # -- health -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The monitor endpoint (no auth needed): status of metadatabase, scheduler, ..."""
        response = self._http.get("/api/v2/monitor/health")
        response.raise_for_status()
        return dict(response.json())

    def wait_healthy(self, components: tuple[str, ...], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while time.monotonic() < deadline:
            try:
                health = self.health()
                if all(health.get(c, {}).get("status") == "healthy" for c in components):
                    return health
                last = health
            except (httpx.HTTPError, ValueError) as err:
                last = err
            time.sleep(0.5)
        raise AirflowApiError(f"stack not healthy after {timeout:.0f}s: {last}")

    # -- dags and runs ----------------------------------------------------------------------
    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/dags/{dag_id}"))

    def wait_for_dag(self, dag_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` and the API knows it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_dag(dag_id)
            except AirflowApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return dict(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body))

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def list_runs(self, dag_id: str, limit: int = 100) -> list[dict[str, Any]]:
        body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": limit})
        return list(body["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(body["task_instances"])

    def clear_task_instances(
        self,
        dag_id: str,
        run_id: str,
        task_ids: list[str],
        only_failed: bool = False,
        reset_dag_runs: bool = True,
    ) -> list[dict[str, Any]]:
        """Clear ``task_ids`` of one run (running ones go to RESTARTING); returns the cleared TIs."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "only_failed": only_failed,
            "reset_dag_runs": reset_dag_runs,
        }
        answer = self.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body)
        return list(answer["task_instances"])

    def set_task_instance_state(
        self, dag_id: str, run_id: str, task_id: str, new_state: str, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """Set the state of one task instance, as "Mark success/failed" in the UI does; returns
        the task instances changed."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        answer = self.request("PATCH", path, json={"new_state": new_state})
        return list(answer["task_instances"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {dag_id}/{run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(0.25)
