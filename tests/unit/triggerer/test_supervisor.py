"""When the Kestra trigger supervisor loads triggers, and what it does after a load."""

from __future__ import annotations

import selectors
import socket
import time
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_kestra_provider.scheduler.notify import Arrival
from airflow_kestra_provider.triggerer.supervisor import UNDEFERRED_DELAY, KestraTriggerRunnerSupervisor
from airflow_kestra_provider.worker.backoff import Backoff


class Recorder(KestraTriggerRunnerSupervisor):
    """The supervisor's own logic, with the stock database and subprocess calls recorded."""

    def clean_unused(self) -> None:
        self.calls.append("clean_unused")

    def load_triggers(self) -> None:
        self.calls.append("load_triggers")
        self.creating_triggers.extend(self.to_load.pop(0) if self.to_load else [])

    def _service_subprocess(self, max_wait_time: float, *args: Any, **kwargs: Any) -> None:
        self.calls.append(f"wait {max_wait_time:.1f}")

    def handle_events(self) -> None:
        self.calls.append("handle_events")

    def handle_failed_triggers(self) -> None:
        self.calls.append("handle_failed_triggers")

    def heartbeat(self) -> None:
        self.calls.append("heartbeat")

    def emit_metrics(self) -> None:
        pass

    def _wake_subprocess(self) -> None:
        self.calls.append("wake subprocess")


def _supervisor(listening: bool = True) -> Recorder:
    sup = Recorder.__new__(Recorder)
    sup.calls = []
    sup.to_load = []
    sup.creating_triggers = deque()
    sup.cancelling_triggers = set()
    sup.reconcile_interval = 10.0
    sup.backoff = Backoff(0.025, 1.0, 60.0, 5)
    sup.waker = None
    sup.listening = object() if listening else None
    sup.notified = True
    sup.next_load = 0.0
    sup.loads = 0
    return sup


def test_the_first_loop_loads_then_waits_until_the_reconcile_interval():
    sup = _supervisor()
    sup.run_once()
    assert sup.calls == [
        "clean_unused",
        "load_triggers",
        "wait 1.0",
        "handle_events",
        "handle_failed_triggers",
        "heartbeat",
    ]
    sup.calls.clear()
    sup.run_once()  # nothing notified, reconcile not due: no database read
    assert "load_triggers" not in sup.calls and "clean_unused" not in sup.calls
    assert sup.loads == 1


def test_a_notification_loads_at_the_next_loop():
    sup = _supervisor()
    sup.run_once()
    sup.calls.clear()
    sup.notified = True
    sup.run_once()
    assert sup.calls[:2] == ["clean_unused", "load_triggers"]
    assert not sup.notified


def test_a_load_that_found_triggers_wakes_the_subprocess_and_loads_again_at_once():
    sup = _supervisor()
    sup.to_load = [["trigger 1"], []]
    sup.run_once()
    assert sup.calls[:4] == ["clean_unused", "load_triggers", "wake subprocess", "wait 0.0"]
    sup.calls.clear()
    sup.run_once()  # re-poll at once; it finds nothing new: no wake-up, back to the interval
    assert sup.calls[:3] == ["clean_unused", "load_triggers", "wait 1.0"]
    assert sup.loads == 2


def test_without_listen_notify_the_interval_is_the_back_off():
    sup = _supervisor(listening=False)
    sup.run_once()
    assert "wait 0.0" in sup.calls  # min_poll_interval (25 ms) right after start


class FakeWaker:
    """Hands out the given payloads, one drain at a time (an exception: the connection broke)."""

    def __init__(self, drains: list[Any]) -> None:
        self.drains = drains
        self.payloads: Counter[str] = Counter()
        self.arrived: set[Arrival] = set()

    def drain(self) -> bool:
        value = self.drains.pop(0)
        if isinstance(value, Exception):
            raise value
        self.payloads.update(value)
        self.arrived.update(Arrival(payload, 7) for payload in value)
        return bool(value)

    def take_arrived(self) -> set[Arrival]:
        arrived, self.arrived = self.arrived, set()
        return arrived

    def close(self) -> None:
        pass


def test_a_new_trigger_makes_a_load_due_at_once():
    sup = _supervisor(listening=False)
    sup.notified = False
    sup.next_load = time.monotonic() + 10
    sup.waker = FakeWaker([["trigger"], [], OSError("connection lost")])  # type: ignore[assignment]
    assert sup._on_notify(None) is True and sup.notified
    sup.notified = False
    assert sup._on_notify(None) is True and not sup.notified  # nothing arrived
    assert sup._on_notify(None) is False  # broken: the selector loop unregisters and closes it


def test_a_task_instance_leaving_deferred_makes_a_load_due_within_the_delay():
    sup = _supervisor(listening=False)
    sup.notified = False
    sup.next_load = time.monotonic() + 10
    sup.waker = FakeWaker([["task_instance:undeferred", "task_instance:undeferred"]])  # type: ignore[assignment]
    assert sup._on_notify(None) is True
    assert not sup.notified
    assert sup.next_load <= time.monotonic() + UNDEFERRED_DELAY


def test_the_waker_keeps_nothing_of_what_the_triggerer_received():
    from airflow_kestra_provider.scheduler.notify import NotifyWaker

    class Connection:  # what psycopg2 hands the waker: notifications from many senders
        def __init__(self) -> None:
            self.notifies: list[SimpleNamespace] = []

        def poll(self) -> None:
            self.notifies += [
                SimpleNamespace(payload="task_instance:undeferred", pid=pid) for pid in range(50)
            ]

    sup = _supervisor(listening=False)
    waker = NotifyWaker(engine=None)
    waker._conn = Connection()
    sup.waker = waker
    for _ in range(3):
        assert sup._on_notify(None) is True
    assert waker.take_arrived() == set()  # nothing piles up between loads
    assert waker.payloads["task_instance:undeferred"] == 150


def test_the_listen_connection_joins_and_leaves_the_selector():
    left, right = socket.socketpair()

    class Waker:
        def connection(self) -> Any:
            return left

        def close(self) -> None:
            pass

    sup = _supervisor(listening=False)
    sup.selector = selectors.DefaultSelector()
    sup.waker = Waker()  # type: ignore[assignment]
    sup.notified = False
    try:
        sup._listen()
        assert (
            sup.listening is left and sup.notified
        )  # (re)connected: load once, something may have been missed
        _handler, on_close = sup.selector.get_key(left).data
        on_close(left)
        assert sup.listening is None
        with pytest.raises(KeyError):
            sup.selector.get_key(left)
    finally:
        left.close()
        right.close()
        sup.selector.close()


def _with_events(count: int) -> KestraTriggerRunnerSupervisor:
    from airflow.jobs.triggerer_job_runner import TriggerEventEntry
    from airflow.triggers.base import TriggerEvent

    sup = KestraTriggerRunnerSupervisor.__new__(KestraTriggerRunnerSupervisor)
    sup.events = deque(
        TriggerEventEntry(trigger_id=n, event=TriggerEvent(n), persist_seq=n if n % 2 else None)
        for n in range(count)
    )
    sup.persisted_event_seqs = deque()
    sup.team_name = None
    return sup


def test_every_event_goes_through_the_batch_in_transactions_of_at_most_event_batch(monkeypatch, session):
    from airflow_kestra_provider.triggerer import supervisor as module

    batches: list[list[int]] = []
    monkeypatch.setattr(module, "EVENT_BATCH", 2)
    monkeypatch.setattr(module, "submit_events", lambda events, s: batches.append([t for t, _ in events]))
    sup = _with_events(5)
    sup.handle_events()
    assert batches == [[0, 1], [2, 3], [4]]
    assert not sup.events
    assert list(sup.persisted_event_seqs) == [1, 3]  # confirmed once handed on, as stock


def test_a_failed_batch_is_handed_on_one_at_a_time_by_the_stock_method(monkeypatch, session):
    from airflow_kestra_provider.triggerer import supervisor as module

    def fail(events: Any, s: Any) -> None:
        raise RuntimeError("lost the database")

    stock: list[int] = []
    monkeypatch.setattr(module, "submit_events", fail)
    monkeypatch.setattr(
        KestraTriggerRunnerSupervisor,
        "on_trigger_event",
        lambda self, trigger_id, event: stock.append(trigger_id),
    )
    sup = _with_events(3)
    sup.handle_events()
    assert stock == [0, 1, 2] and not sup.events
    assert list(sup.persisted_event_seqs) == [1]
