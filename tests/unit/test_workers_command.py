"""How ``airflow kestra workers list`` shows a worker: its state for people, one row per name."""

from __future__ import annotations

import datetime

from airflow_kestra_provider.cli.workers_command import display_state, unserved_lines, worker_table
from airflow_kestra_provider.queue.claims import QueueDepth, WorkerRow

NOW = datetime.datetime(2026, 12, 2, 4, 0, tzinfo=datetime.timezone.utc)


def row(name: str = "w1", state: str = "running", age: float = 0.5, started: int = 0, **kw) -> WorkerRow:
    values = dict(
        id=f"{name}-{started}",
        name=name,
        hostname="host1",
        pid=42,
        embedded=False,
        concurrency=4,
        queues=("default",),
        version="0.2.0",
        state=state,
        started_at=NOW + datetime.timedelta(seconds=started),
        heartbeat_at=NOW,
        heartbeat_age=age,
        running=1,
    )
    values.update(kw)
    return WorkerRow(**values)


def test_display_state_tells_late_and_silent_workers_apart():
    def shown(state: str, age: float) -> str:
        return display_state(row(state=state, age=age), heartbeat_interval=5, worker_timeout=30)

    assert shown("running", 1) == "healthy"
    assert shown("running", 12) == "stale"
    assert shown("running", 31) == "dead"  # silent past the timeout, not reaped yet
    assert shown("maintenance", 12) == "maintenance"
    assert shown("draining", 40) == "dead"
    assert shown("stopped", 1) == "stopped"
    assert shown("dead", 100) == "dead"


def test_the_table_shows_the_newest_registration_of_each_name():
    rows = [
        row(started=0, state="dead", age=90),
        row(started=60, running=3),
        row("w2", queues=None, running=0),
    ]
    table = worker_table(rows, heartbeat_interval=5, worker_timeout=30)
    assert [(r["name"], r["state"], r["running"], r["free"], r["queues"]) for r in table] == [
        ("w1", "healthy", 3, 1, "default"),
        ("w2", "healthy", 0, 4, "*"),
    ]
    stopped = worker_table([row(state="stopped")], heartbeat_interval=5, worker_timeout=30)
    assert stopped[0]["free"] == 0


def test_only_unserved_queues_get_a_line():
    lines = unserved_lines([QueueDepth("a", 2, 5.0, True), QueueDepth("b", 3, 42.4, False)])
    assert lines == [
        "queue 'b': 3 task instance(s) waiting (oldest 42s), and no live worker serves it: start one "
        "with `airflow kestra worker --queues b`"
    ]
