"""NotifyWaker's handling of notifications that arrived before a loop starts."""

from __future__ import annotations

from types import SimpleNamespace

from airflow_kestra_provider.scheduler.notify import NotifyWaker


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
