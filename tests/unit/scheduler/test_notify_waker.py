"""NotifyWaker's handling of notifications that arrived before a loop starts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_kestra_provider.scheduler.notify import NotifyWaker, task_instances_changed


class _Connection:
    def __init__(self, arrived: list[str], fail: bool = False) -> None:
        self.arrived = arrived
        self.notifies: list[SimpleNamespace] = []
        self.fail = fail
        self.closed = False

    def poll(self) -> None:
        if self.fail:
            raise OSError("connection lost")
        self.notifies += [SimpleNamespace(payload=p) for p in self.arrived]
        self.arrived = []

    def fileno(self) -> int:  # pragma: no cover - wait() is not called here
        raise AssertionError

    def close(self) -> None:
        self.closed = True


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
    assert waker.take_arrived() == {"task_instance:success", "dag_run:queued"}
    assert waker.take_arrived() == set()


@pytest.mark.parametrize(
    ("payloads", "scheduled", "changed"),
    [
        ({"task_instance:success"}, False, True),  # slots freed
        ({"task_instance:up_for_retry", "dag_run:queued"}, False, True),
        ({"task_instance:scheduled"}, False, False),  # the discarding loop's own
        ({"task_instance:scheduled"}, True, True),  # in an idle wait: the triggerer's
        ({"dag_run:queued", "kestra_workload:finished", "asset_dag_run_queue"}, True, False),
        (set(), True, False),
    ],
)
def test_which_notifications_may_make_task_instances_queueable(payloads, scheduled, changed):
    assert task_instances_changed(payloads, scheduled=scheduled) is changed
