"""The triggerer's main process: loads triggers when told to, not once a second.

The stock :class:`~airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor` runs, every loop
(at most a second apart, and after every message or log line of its subprocess):
``Trigger.assign_unassigned`` (a count and a locking select), ``Trigger.ids_for_triggerer`` (the
ids of every trigger it owns, thousands with thousands of deferred tasks, diffed against what
runs) and ``Trigger.clean_unused``.
:class:`KestraTriggerRunnerSupervisor` keeps each of those calls (``clean_unused`` first, so the
row of a cancelled trigger is gone before the ids are read) and makes them when something may
have changed:

* on PostgreSQL, a NOTIFY on :data:`~airflow_kestra_provider.scheduler.notify.TRIGGERER_CHANNEL`
  ends its wait at once (the LISTEN connection sits in the same selector as the subprocess's
  sockets): a trigger row inserted (a task deferred) is loaded at once; a task instance that
  left ``deferred`` (cleared or marked while it waited, so its trigger must be cancelled) within
  :data:`UNDEFERRED_DELAY`, as often as the stock loop would: each event this triggerer hands on
  sends that notification too, and a load per fired event would cost more than the events;
* right after a load that found triggers to start or cancel (Kestra's immediate re-poll), in
  case more arrived meanwhile;
* otherwise every ``[kestra] triggerer_reconcile_interval`` seconds, which also takes over the
  triggers of a triggerer that stopped heartbeating; without LISTEN/NOTIFY (turned off, other
  databases, connection down) the interval steps back from ``[kestra] min_poll_interval`` to
  ``[kestra] max_poll_interval`` as the workers' back-off does.

After a load that gave the subprocess triggers to start or cancel it sends it
:data:`~.async_runner.WAKE_SIGNAL`, so it asks for them at once; events its triggers fire come
back at once too (see :mod:`.async_runner`), and ``Trigger.submit_event`` moving the task
instance to ``scheduled`` wakes the Kestra scheduler through its own NOTIFY.

Fired events are handed on in batches: the stock ``handle_events`` calls ``Trigger.submit_event``
once per event, each in a transaction of its own, so a thousand triggers firing together wait
for a thousand commits one after another, and for a few statements per task each. Ours hands on
up to :data:`EVENT_BATCH` events in one transaction with :func:`.events.submit_events` (the same
handling, with a few statements per batch); if the batch fails, it is put back and handed on one
event at a time by the stock method (which also raises as stock does).
"""

from __future__ import annotations

import logging
import os
import selectors
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import attrs
from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor
from airflow.observability import stats
from airflow.utils.session import create_session

from airflow_kestra_provider import settings
from airflow_kestra_provider.scheduler import notify
from airflow_kestra_provider.triggerer.async_runner import WAKE_SIGNAL, KestraTriggerRunner
from airflow_kestra_provider.triggerer.events import submit_events
from airflow_kestra_provider.worker.backoff import Backoff

log = logging.getLogger(__name__)

MAX_WAIT = 1.0  # seconds; the stock loop's longest wait (heartbeat and metrics run after it)
EVENT_BATCH = 500  # fired events handed on per transaction
# seconds from a task instance leaving ``deferred`` to the load that cancels its trigger
UNDEFERRED_DELAY = 1.0
NEW_TRIGGER_PAYLOAD = "trigger"  # what notify.py sends when trigger rows are inserted


@attrs.define(kw_only=True, slots=False)  # slots=False: super() inside the contextmanager
class KestraTriggerRunnerSupervisor(TriggerRunnerSupervisor):
    """Stock trigger supervisor whose loads are driven by NOTIFY and a back-off."""

    reconcile_interval: float = attrs.field(factory=settings.triggerer_reconcile_interval)
    backoff: Backoff = attrs.field(
        factory=lambda: Backoff(
            settings.min_poll_interval(),
            settings.max_poll_interval(),
            settings.poll_switch_interval(),
            settings.switch_steps(),
        )
    )
    waker: notify.NotifyWaker | None = attrs.field(default=None, init=False)
    listening: Any = attrs.field(default=None, init=False)  # the connection in the selector
    notified: bool = attrs.field(default=True, init=False)  # load at the first loop
    next_load: float = attrs.field(default=0.0, init=False)
    loads: int = attrs.field(default=0, init=False)

    @classmethod
    def run_in_process(cls) -> None:
        KestraTriggerRunner().run()

    @contextmanager
    def run_context(self) -> Iterator[None]:
        from airflow import settings as airflow_settings

        engine = airflow_settings.engine
        if settings.listen_notify() and engine is not None and notify.is_postgres(engine):
            notify.install_triggers(engine)
            self.waker = notify.NotifyWaker(engine, channel=notify.TRIGGERER_CHANNEL)
        try:
            with super().run_context():
                yield
        finally:
            self._stop_listening()
            if self.waker is not None:
                self.waker.close()

    # -- the loop --------------------------------------------------------------------------------
    def run_once(self) -> None:
        now = time.monotonic()
        self._listen()
        if self.notified or now >= self.next_load:
            self.notified = False
            self._load(now)
        self._service_subprocess(max(0.0, min(MAX_WAIT, self.next_load - time.monotonic())))
        self.handle_events()
        self.handle_failed_triggers()
        self.heartbeat()
        self.emit_metrics()

    def _load(self, now: float) -> None:
        """Clean up, take unassigned triggers and diff what this triggerer owns against what
        runs (the stock calls), then wake the subprocess if that gave it anything to do."""
        self.loads += 1
        self.clean_unused()
        before = len(self.creating_triggers), len(self.cancelling_triggers)
        self.load_triggers()
        changed = (len(self.creating_triggers), len(self.cancelling_triggers)) != before
        if changed:
            self.backoff.busy(now)
            self._wake_subprocess()
            self.next_load = now  # load again at once: more may have come meanwhile
        elif self.listening is not None:
            self.next_load = now + self.reconcile_interval
        else:
            self.next_load = now + self.backoff.idle_interval(now)

    def handle_events(self) -> None:
        """Hand fired events on, up to :data:`EVENT_BATCH` per transaction."""
        while self.events:
            batch = [self.events.popleft() for _ in range(min(EVENT_BATCH, len(self.events)))]
            try:
                with create_session() as session:
                    submit_events([(entry.trigger_id, entry.event) for entry in batch], session)
            except Exception:
                log.exception(
                    "Handing on %d trigger events in one transaction failed; one at a time", len(batch)
                )
                self.events.extendleft(reversed(batch))
                break
            tags = {"team_name": self.team_name} if self.team_name else {}
            for entry in batch:
                if entry.persist_seq is not None:
                    self.persisted_event_seqs.append(entry.persist_seq)
                stats.incr("triggers.succeeded", tags=tags)
        super().handle_events()

    def _wake_subprocess(self) -> None:
        if self.pid and self.is_alive():
            with suppress(ProcessLookupError):
                os.kill(self.pid, WAKE_SIGNAL)

    # -- the LISTEN connection in the selector ---------------------------------------------------
    def _listen(self) -> None:
        """Put the LISTEN connection into the selector when it is (again) available."""
        if self.waker is None or self.listening is not None:
            return
        conn = self.waker.connection()
        if conn is None:
            return
        self.selector.register(conn, selectors.EVENT_READ, (self._on_notify, self._on_listen_closed))
        self.listening = conn
        self.notified = True  # anything may have happened while it was down

    def _on_notify(self, conn: Any) -> bool:
        """Selector handler: a new trigger makes a load due at once, a task instance that left
        ``deferred`` within :data:`UNDEFERRED_DELAY`; False (unregister) when the connection broke."""
        try:
            if self.waker is None:
                return True
            if self.waker.drain():
                # what this drain received (taking it also keeps the waker from holding it)
                if any(arrival.payload == NEW_TRIGGER_PAYLOAD for arrival in self.waker.take_arrived()):
                    self.notified = True
                else:
                    self.next_load = min(self.next_load, time.monotonic() + UNDEFERRED_DELAY)
            return True
        except Exception:
            log.exception("LISTEN connection lost; loading on the back-off until it is back")
            return False

    def _on_listen_closed(self, conn: Any) -> None:
        """Called by the stock selector loop for a handler that returned False (it closes the
        connection after this); the waker reconnects at a later loop."""
        self._stop_listening()
        if self.waker is not None:
            self.waker.close()

    def _stop_listening(self) -> None:
        if self.listening is not None:
            with suppress(KeyError, ValueError):
                self.selector.unregister(self.listening)
            self.listening = None
