"""Run a task with an Execution API client that keeps retrying through a database outage.

Every call a task makes to the api-server (start, rendered fields, XComs, heartbeats, the final
``succeed`` / ``finish``) goes through the supervisor's :class:`~airflow.sdk.api.client.Client`.
While the metadata database is down the api-server answers those calls with HTTP 500 ("Database
error"), or refuses the connection if it is itself restarting. Airflow's client retries such
errors ``[workers] execution_api_retries`` times (5 attempts) with a random exponential
back-off (waits of 1 s, then up to 2, 4 and 8 s): 5 to 15 seconds in all. Past that the
supervisor gives up: a task still preparing fails before it ran, and a task that has done its
work cannot record its success (the supervisor replays that call once when the task process
exits), so both can end ``failed``.

:class:`RetryWindowClient` is Airflow's client with the same retry policy (same retried errors,
same random exponential back-off from ``[workers] execution_api_retry_wait_min``, at least as many
attempts), except that it keeps retrying a request until ``[kestra] execution_api_retry_window``
seconds have passed since its first attempt, and waits at most :data:`MAX_WAIT` seconds between
two attempts. Runners hand it to ``supervise_task`` (its
``client`` parameter), so only our runners and the tasks they supervise are affected; nothing in
Airflow is patched.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from airflow.sdk.api.client import Client
from tenacity import stop_after_attempt, stop_after_delay, wait_random_exponential

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask


# Longest wait between two attempts (s), or ``[workers] execution_api_retry_wait_max`` if lower.
# Airflow's back-off doubles up to 90 s by default: after a 30 s outage a task could then sleep
# another minute before its next attempt, and a stopping scheduler (embedded worker's drain: 60 s) would kill
# it meanwhile. Capped, a task goes on within about 10 s of the api-server answering again.
MAX_WAIT = 10.0


class RetryWindowClient(Client):
    """Airflow's Execution API client whose failed requests are retried for ``retry_window`` s.

    A request stops being retried once it has made at least Airflow's number of attempts *and*
    ``retry_window`` seconds have passed since its first attempt (the last back-off may end a
    little later). Between attempts it waits as Airflow does (random exponential from
    ``[workers] execution_api_retry_wait_min``), at most :data:`MAX_WAIT` seconds. ``sleep`` is
    the function that waits (tests pass their own).
    """

    def __init__(
        self,
        *,
        retry_window: float,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        from airflow.configuration import conf

        super().__init__(**kwargs)
        self.retry_window = retry_window
        attempts = conf.getint("workers", "execution_api_retries")
        wait_min = conf.getfloat("workers", "execution_api_retry_wait_min")
        wait_max = min(conf.getfloat("workers", "execution_api_retry_wait_max"), MAX_WAIT)
        # Airflow's decorated method, re-wrapped with a longer stop condition (tenacity's public
        # ``retry_with``): the retried errors and the retry log stay Airflow's own.
        self._request_with_retries = Client.request.retry_with(
            stop=stop_after_attempt(attempts) & stop_after_delay(retry_window),
            wait=wait_random_exponential(min=wait_min, max=max(wait_min, wait_max)),
            sleep=sleep,
        )

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        return self._request_with_retries(self, *args, **kwargs)


def run_task(workload: ExecuteTask, *, server: str | None, retry_window: float) -> int:
    """Supervise ``workload`` (in the calling process's main thread) as Airflow's
    ``BaseExecutor.run_workload`` does, with a :class:`RetryWindowClient`; returns the exit code."""
    from airflow.executors.base_executor import get_execution_api_server_url
    from airflow.sdk.execution_time.supervisor import supervise_task

    if server is None:
        server = get_execution_api_server_url()
    if not server:
        raise ValueError("Invalid execution API server URL: set [core] execution_api_server_url")
    client = RetryWindowClient(
        retry_window=retry_window,
        base_url=server,
        token=workload.token,
        # What supervise_task gives the client it makes itself.
        limits=httpx.Limits(max_keepalive_connections=1, max_connections=10),
    )
    try:
        return supervise_task(
            ti=workload.ti,  # type: ignore[arg-type]  # a TaskInstanceDTO, as in run_workload
            bundle_info=workload.bundle_info,
            dag_rel_path=workload.dag_rel_path,
            token=workload.token,
            server=server,
            log_path=workload.log_path,
            subprocess_logs_to_stdout=True,
            client=client,
            sentry_integration=getattr(workload, "sentry_integration", ""),
        )
    finally:
        with contextlib.suppress(Exception):
            client.close()
