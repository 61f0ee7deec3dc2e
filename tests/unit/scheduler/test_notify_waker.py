"""NotifyWaker's handling of notifications that arrived before a loop starts."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from airflow_kestra_provider.scheduler.notify import Arrival, NotifyWaker, task_instances_changed

SENDER = 4242  # the backend pid of whoever sent the notifications


class _Connection:
    def __init__(self, arrived: list[str], fail: bool = False) -> None:
        self.arrived = arrived
        self.notifies: list[SimpleNamespace] = []
        self.fail = fail
        self.closed = False
        self.idle, self.peer = socket.socketpair()  # the peer never writes

    def poll(self) -> None:
        if self.fail:
            raise OSError("connection lost")
        self.notifies += [SimpleNamespace(payload=p, pid=SENDER) for p in self.arrived]
        self.arrived = []

    def fileno(self) -> int:  # never readable: nothing more arrives while waiting
        return self.idle.fileno()

    def close(self) -> None:
        self.closed = True
        self.idle.close()
        self.peer.close()


def test_discard_pending_drops_what_arrived_and_keeps_counting_it():
    waker = NotifyWaker(engine=None)
    waker._conn = _Connection(["task_instance:scheduled", "dag_run:queued"])
    waker.discard_pending()
    assert waker._conn.notifies == []
    assert waker.payloads == {"task_instance:scheduled": 1, "dag_run:queued": 1}
    assert waker.wakeups == 0  # not a wake-up: no loop was started for them


def test_discard_pending_closes_a_lost_connection_and_does_nothing_without_one():
    waker = NotifyWaker(engine=None)
    waker.discard_pending()  # never connected: nothing to do
    lost = _Connection([], fail=True)
    waker._conn = lost
    waker.discard_pending()
    assert waker._conn is None and lost.closed


def test_take_arrived_gives_each_payload_received_since_the_last_call_once():
    waker = NotifyWaker(engine=None)
    waker._conn = _Connection(["task_instance:success", "task_instance:success", "dag_run:queued"])
    waker.discard_pending()
    assert waker.take_arrived() == {
        Arrival("task_instance:success", SENDER),
        Arrival("dag_run:queued", SENDER),
    }
    assert waker.take_arrived() == set()


def test_wait_ends_only_on_a_notification_that_wakes_and_keeps_the_others():
    waker = NotifyWaker(engine=None)
    waker._conn = _Connection(["task_instance:scheduled"])
    start = time.monotonic()
    assert not waker.wait(0.2, wakes=lambda arrival: arrival.payload != "task_instance:scheduled")
    assert time.monotonic() - start >= 0.19  # waited the whole timeout
    assert waker.wakeups == 0
    assert waker.take_arrived() == {Arrival("task_instance:scheduled", SENDER)}
    waker._conn.arrived = ["task_instance:scheduled", "task_instance:success"]
    assert waker.wait(5.0, wakes=lambda arrival: arrival.payload != "task_instance:scheduled")
    assert waker.wakeups == 1
    waker._conn.arrived = ["task_instance:scheduled"]
    assert waker.wait(5.0)  # without a filter every notification wakes


@pytest.mark.parametrize(
    ("payloads", "changed"),
    [
        ({"task_instance:success"}, True),  # slots freed
        ({"task_instance:up_for_retry", "dag_run:queued"}, True),
        ({"task_instance:scheduled"}, True),  # someone else's: the triggerer resumed a task
        ({"dag_run:queued", "kestra_workload:finished", "asset_dag_run_queue"}, False),
        (set(), False),
    ],
)
def test_which_notifications_may_make_task_instances_queueable(payloads, changed):
    assert task_instances_changed(payloads) is changed
