"""The kestra.* metrics arrive through Airflow's real StatsD backend, tagged and per entity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_kestra_provider import metrics
from airflow_kestra_provider.metrics import WorkerMetrics, entity_name
from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import QueueDepth, QueueSample
from airflow_kestra_provider.worker.reaper import Reaper
from tests.statsd_listener import StatsdListener, parse_line
from tests.unit.conftest import STATSD_PREFIX

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(
    value for name, value in vars(metrics).items() if name.isupper() and str(value).startswith("kestra.")
)


def sent(statsd: StatsdListener, stat: str, tags: dict[str, str] | None = None) -> list[float]:
    return statsd.received(f"{STATSD_PREFIX}.{stat}", tags)


def assert_per_entity(
    statsd: StatsdListener, tagged: bool, stat: str, tag: str, entity: str, values: list[float]
) -> None:
    """``stat`` arrived as ``values`` under its name with ``entity`` appended, and under its base
    name: tagged when the backend sends tags, else mixed with the other entities' values."""
    assert sent(statsd, entity_name(stat, entity)) == values
    if tagged:
        assert sent(statsd, stat, {tag: entity}) == values
    else:
        base = sent(statsd, stat)
        assert all(value in base for value in values), (stat, base)


def test_every_name_is_under_kestra_and_documented():
    assert len(NAMES) == 20
    doc = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [name for name in NAMES if f"`{name}`" not in doc]
    assert not missing, f"docs/metrics.md does not describe {missing}"
    documented = set(re.findall(r"`(kestra\.[a-z_]+\.[a-z_]+)`", doc))
    assert documented <= set(NAMES), (
        f"docs/metrics.md names metrics the code does not send: {documented - set(NAMES)}"
    )


def test_entity_names_are_statsd_safe_and_keep_the_hierarchy():
    assert entity_name(metrics.WORKER_RUNNING, "w-1_a") == "kestra.worker.running.w-1_a"
    assert (
        entity_name(metrics.WORKER_RUNNING, "host.example.com") == "kestra.worker.running.host__example__com"
    )
    assert entity_name(metrics.QUEUE_DEPTH, "gpu queue/2:x") == "kestra.queue.depth.gpu_queue_2_x"


def test_worker_metrics_arrive_per_worker(statsd, statsd_tags, settled):
    worker = WorkerMetrics("w1")
    worker.polled(0.012, 3)
    worker.polled(0.004, 0)
    worker.poll_failed()
    worker.started(0.25)
    worker.slots(running=2, free=6)
    settled()

    def check(stat: str, values: list[float]) -> None:
        assert_per_entity(statsd, statsd_tags, stat, "worker_name", "w1", values)

    check(metrics.WORKER_POLLS, [1, 1])
    check(metrics.WORKER_EMPTY_POLLS, [1])
    check(metrics.WORKER_CLAIMS, [3])
    check(metrics.WORKER_BATCH_SIZE, [3])
    check(metrics.WORKER_POLL_ERRORS, [1])
    check(metrics.WORKER_POLL_DURATION, [12, 4])  # milliseconds, as Airflow's timers
    check(metrics.WORKER_CLAIM_TO_START, [250])
    check(metrics.WORKER_RUNNING, [2])
    check(metrics.WORKER_FREE_SLOTS, [6])
    types = {m.name.removeprefix(f"{STATSD_PREFIX}."): m.type for m in statsd.all()}
    assert types[metrics.WORKER_POLLS] == "c"
    assert types[metrics.WORKER_BATCH_SIZE] == "g"
    assert types[metrics.WORKER_POLL_DURATION] == "ms"


def test_two_workers_do_not_share_a_series(statsd, settled):
    WorkerMetrics("a").slots(running=1, free=3)
    WorkerMetrics("b").slots(running=4, free=0)
    settled()
    assert sent(statsd, "kestra.worker.running.a") == [1]
    assert sent(statsd, "kestra.worker.running.b") == [4]
    assert sent(statsd, "kestra.worker.free_slots.b") == [0]


def test_a_reaping_pass_counts_what_it_settled(statsd, settled, monkeypatch):
    notified: list[object] = []
    monkeypatch.setattr(claims, "reap_dead_workers", lambda session, timeout: (2, 3, 1))
    monkeypatch.setattr(claims, "purge", lambda session, retention: None)
    monkeypatch.setattr(claims, "notify", notified.append)
    assert Reaper(timeout=30, interval=5).reap(None, "test") == (2, 3, 1)  # type: ignore[arg-type]
    assert notified == [None]  # released claims wake the workers
    monkeypatch.setattr(claims, "reap_dead_workers", lambda session, timeout: (0, 0, 0))
    Reaper(timeout=30, interval=5).reap(None, "test")  # type: ignore[arg-type]
    assert notified == [None]  # nothing released: no notification
    settled()
    assert sent(statsd, metrics.REAPER_DEAD_WORKERS) == [2]
    assert sent(statsd, metrics.REAPER_REQUEUED) == [3]
    assert sent(statsd, metrics.REAPER_FAILED) == [1]


def test_a_queue_sample_is_sent_per_queue(statsd, statsd_tags, settled):
    sample = QueueSample(
        [QueueDepth("default", 5, 12.5, served=True), QueueDepth("gpu", 2, 40.0, served=False)],
        job_unclaimed=4,
        job_claimed=9,
    )
    metrics.queue_sample(sample, gone=["old"])
    settled()
    for queue, depth, age in (("default", 5, 12.5), ("gpu", 2, 40.0), ("old", 0, 0.0)):
        assert_per_entity(statsd, statsd_tags, metrics.QUEUE_DEPTH, "queue", queue, [depth])
        assert_per_entity(statsd, statsd_tags, metrics.QUEUE_OLDEST_AGE, "queue", queue, [age])
    assert sent(statsd, metrics.QUEUE_UNSERVED) == [1]
    assert sent(statsd, metrics.EXECUTOR_UNCLAIMED) == [4]
    assert sent(statsd, metrics.EXECUTOR_CLAIMED) == [9]


def test_a_scheduler_loop(statsd, settled):
    metrics.scheduler_loop(0.05, busy=True, runs_created=7)
    metrics.scheduler_loop(0.01, busy=False, runs_created=0)
    settled()
    assert sent(statsd, metrics.SCHEDULER_LOOP_DURATION) == [50, 10]
    assert sent(statsd, metrics.SCHEDULER_BUSY_LOOPS) == [1]
    assert sent(statsd, metrics.SCHEDULER_RUNS_CREATED) == [7]


def test_without_a_backend_nothing_is_sent_and_nothing_fails():
    worker = WorkerMetrics("w1")  # Stats as the unit-test configuration leaves it: no backend
    worker.polled(0.01, 1)
    worker.slots(running=0, free=1)


# -- the listener itself ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "name", "value", "kind", "tags"),
    [
        ("a.b:1|c", "a.b", 1.0, "c", {}),
        ("a.b:12.5|ms|@0.5", "a.b", 12.5, "ms", {}),
        ("a.b:3|g|#worker_name:w1,env:prod", "a.b", 3.0, "g", {"worker_name": "w1", "env": "prod"}),
        ("a.b,queue=gpu:2|g", "a.b", 2.0, "g", {"queue": "gpu"}),
        ("a.b:-2|g", "a.b", -2.0, "g", {}),
    ],
)
def test_the_listener_parses_statsd_lines(line, name, value, kind, tags):
    metric = parse_line(line)
    assert metric is not None
    assert (metric.name, metric.value, metric.type, metric.tags) == (name, value, kind, tags)


def test_the_listener_ignores_what_is_not_a_metric():
    assert parse_line("garbage") is None
    assert parse_line("a.b:x|c") is None
