"""The process runners are forked from: exec'd with a scrubbed environment, Airflow preloaded.

Forking runners straight from the worker would hand every task the worker's memory (the
metadata database engine and session factory, the scheduler's JWT signer in the embedded case)
and its exec-time environment, which ``/proc/<pid>/environ`` keeps showing whatever
``os.environ`` says later. Instead the runners come from Python's multiprocessing *forkserver*:
a fresh interpreter started once per worker process, with the secret variables removed from the
environment it is exec'd with, that imports Airflow and the task-side modules
(:mod:`~airflow_kestra_provider.worker.runner_preload`) before it forks anything. Its runners and
their task processes never held a secret and still start with everything imported.

``os.environ`` is scrubbed only around the ``fork_exec`` of the server (``start`` is called
before the worker starts any thread of its own) and restored at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.context import BaseContext

# Variables a task process must never see: the database URL (and its _CMD/_SECRET variants),
# the engine arguments, and the secrets that sign Execution API tokens and api-server sessions
# and encrypt connections. (``AIRFLOW_CONN_*`` connections stay: tasks are meant to use them,
# as under every stock executor.)
SECRET_ENV_PREFIXES = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_ENGINE_ARGS",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY",
)

PRELOAD = ["airflow_kestra_provider.worker.runner_preload"]


def is_secret(name: str) -> bool:
    return name.startswith(SECRET_ENV_PREFIXES)


@contextlib.contextmanager
def _scrubbed_environ() -> Iterator[None]:
    removed = {name: os.environ.pop(name) for name in list(os.environ) if is_secret(name)}
    try:
        yield
    finally:
        os.environ.update(removed)


def start() -> BaseContext:
    """The forkserver context, its server started now (once per process) with a clean environment."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with _scrubbed_environ():
        forkserver.ensure_running()
    return context
