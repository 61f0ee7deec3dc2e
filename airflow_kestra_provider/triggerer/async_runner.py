"""The triggerer's subprocess (the asyncio loop running the triggers), woken instead of clocked.

The stock :class:`~airflow.jobs.triggerer_job_runner.TriggerRunner` loop cleans up finished
triggers, syncs with its supervisor (sending events, receiving triggers to create or cancel),
then sleeps one second. So a trigger the supervisor has loaded waits up to 1 s before the
subprocess asks for it, and a fired event waits up to 1 s before it reaches the supervisor.
:class:`KestraTriggerRunner` keeps that loop and changes only its wait:

* it ends at once when a trigger yields an event (the stock code appends it to ``events``, a
  deque that here wakes the loop) or when the supervisor sends :data:`WAKE_SIGNAL` (it has
  triggers to create or cancel); otherwise after :data:`IDLE_WAIT` seconds, as stock;
* the cleanup pass, which walks every running trigger with a ``sleep(0)`` each, is skipped
  when no trigger's task is done (one pass over the dict instead of one loop turn per trigger).

The stock loop sleeps on its stop event right after ``cancel_triggers``; ours waits in
``cancel_triggers`` and sets that stop event once, so the stock wait returns at once from then
on (stop requests still end the loop: ``stop`` is set and our wait is woken too).
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from collections.abc import Callable
from typing import Any

from airflow.jobs.triggerer_job_runner import TriggerRunner

# Sent by the supervisor when it has triggers for the subprocess. Its default action is to
# ignore it, so a wake-up that arrives before the handler is installed cannot kill the process.
WAKE_SIGNAL = signal.SIGURG
IDLE_WAIT = 1.0  # seconds, the stock loop's sleep; the supervisor's health check counts on it


class WakingDeque(deque):
    """A deque that calls ``on_append`` after every append (the stock runner only appends)."""

    def __init__(self, on_append: Callable[[], None]) -> None:
        super().__init__()
        self._on_append = on_append

    def append(self, item: Any) -> None:
        super().append(item)
        self._on_append()


class KestraTriggerRunner(TriggerRunner):
    """The stock trigger runner with a wait that ends as soon as there is something to do."""

    def __init__(self) -> None:
        super().__init__()
        self._wake: asyncio.Event | None = None
        self.events = WakingDeque(self.wake)
        self.wakeups = 0

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def arun(self) -> None:
        self._wake = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(WAKE_SIGNAL, self.wake)
        await super().arun()

    def _handle_signal(self, signum: int, frame: Any) -> None:
        super()._handle_signal(signum, frame)
        self.wake()

    async def cleanup_finished_triggers(self) -> list[int]:
        if not any(details["task"].done() for details in self.triggers.values()):
            return []
        return await super().cleanup_finished_triggers()

    async def cancel_triggers(self) -> None:
        await super().cancel_triggers()
        if self._stop_event is not None and not self._stop_event.is_set():
            self._stop_event.set()  # the stock wait after this call returns at once from now on
        if self._wake is None or self.stop:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), IDLE_WAIT)
            self.wakeups += 1
        except asyncio.TimeoutError:
            pass
        self._wake.clear()
