"""Two per-task costs of Airflow's task supervisor and task runner, removed in our runners only.

Applied once in the runners' forkserver (:func:`apply`, from ``runner_pool.preload``), so the
runners and the task processes they fork inherit it; LocalExecutor, Celery and the stock
scheduler are untouched. Each touches a private name of ``airflow.sdk.execution_time``;
``tests/unit/worker/test_supervisor_tuning.py`` fails when Airflow changes one of them.

* **No heartbeat right after the start.** ``ActivitySubprocess`` starts with
  ``_last_heartbeat_attempt = 0``, so its first monitor pass sends a heartbeat at once, although
  the start call (``PATCH .../run``) has just set the task instance's ``last_heartbeat_at``. We
  count the start as the first heartbeat attempt: the next one follows ``[workers]
  min_heartbeat_interval`` later, as every later one does. A no-op task makes three Execution
  API calls instead of four.
* **Pydantic adapters built once.** Every task process built three ``TypeAdapter`` schemas of
  the same types (the comms decoder's two of ``ToTask``, ``StartupDetails``) and one of
  ``JsonValue`` per rendered template field: about a quarter of a no-op task process's CPU
  (py-spy). The modules look ``TypeAdapter`` up when they call it, so we give them a factory
  that returns an adapter built once, before the fork, for exactly those types, and builds any
  other type as pydantic would. An adapter holds no per-call state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

_applied = False


def _first_heartbeat_after_start(original: Callable[..., None]) -> Callable[..., None]:
    def _on_child_started(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._last_heartbeat_attempt = time.monotonic()

    _on_child_started.__wrapped__ = original  # type: ignore[attr-defined]
    return _on_child_started


def adapter_factory(real: Any, prebuilt: dict[int, tuple[Any, Any]]) -> Callable[..., Any]:
    """A stand-in for ``pydantic.TypeAdapter``: the prebuilt adapter for a known type (by
    identity, without options), else a new one (one frame deeper, so forward references still
    resolve in the caller's namespace)."""

    def type_adapter(type_: Any, *args: Any, **kwargs: Any) -> Any:
        found = prebuilt.get(id(type_))
        if found is not None and found[0] is type_ and not args and not kwargs:
            return found[1]
        kwargs["_parent_depth"] = kwargs.get("_parent_depth", 2) + 1
        return real(type_, *args, **kwargs)

    type_adapter.__wrapped__ = real  # type: ignore[attr-defined]  # the stock class, for airflow_seams
    return type_adapter


def apply() -> None:
    """Install both changes in this process (idempotent)."""
    global _applied
    if _applied:
        return
    from airflow.sdk.execution_time import comms, supervisor, task_runner
    from pydantic import JsonValue, TypeAdapter

    supervisor.ActivitySubprocess._on_child_started = _first_heartbeat_after_start(  # type: ignore[method-assign]
        supervisor.ActivitySubprocess._on_child_started
    )
    types: tuple[Any, ...] = (comms.ToTask, task_runner.StartupDetails, JsonValue)
    prebuilt = {id(t): (t, TypeAdapter(t)) for t in types}
    factory: Any = adapter_factory(TypeAdapter, prebuilt)
    comms.TypeAdapter = factory  # type: ignore[misc]
    task_runner.TypeAdapter = factory  # type: ignore[misc]
    _applied = True
