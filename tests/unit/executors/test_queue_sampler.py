"""The executor's queue sampling: its schedule, its warnings and its failures (a fake sample
function stands in for the database statement, which tests/integration runs)."""

from __future__ import annotations

import logging

import pytest

from airflow_kestra_provider import metrics
from airflow_kestra_provider.executors.queue_sampler import QueueSampler
from airflow_kestra_provider.queue.claims import QueueDepth, QueueSample
from tests.unit.conftest import STATSD_PREFIX

LOGGER = "airflow_kestra_provider.executors.queue_sampler"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Samples:
    """Returns the samples it is given, in turn; an exception in the list is raised."""

    def __init__(self, *samples: QueueSample | Exception) -> None:
        self.samples = list(samples)
        self.calls: list[int | None] = []

    def __call__(self, job_id: int | None) -> QueueSample:
        self.calls.append(job_id)
        item = self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]
        if isinstance(item, Exception):
            raise item
        return item


def sample(*queues: QueueDepth, unclaimed: int = 0, claimed: int = 0) -> QueueSample:
    return QueueSample(list(queues), job_unclaimed=unclaimed, job_claimed=claimed)


def test_samples_at_most_every_interval_and_keeps_the_last_between():
    clock = Clock()
    first, second = sample(unclaimed=1), sample(unclaimed=2)
    samples = Samples(first, second)
    sampler = QueueSampler(5.0, samples, clock=clock)
    assert sampler.tick(7) is first
    clock.now += 4.9
    assert sampler.tick(7) is first
    assert samples.calls == [7]
    clock.now += 0.1
    assert sampler.tick(7) is second
    assert samples.calls == [7, 7]


def test_a_failing_sample_is_logged_once_and_breaks_nothing(caplog):
    clock = Clock()
    good = sample(unclaimed=3)
    samples = Samples(good, RuntimeError("connection refused"), RuntimeError("connection refused"), good)
    sampler = QueueSampler(5.0, samples, clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert sampler.tick(1) is good
    for _ in range(3):
        clock.now += 5
        assert sampler.tick(1) is good  # the failures return the last good sample
    failures = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "sampling the kestra queues" in failures[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_a_failure_before_any_sample_gives_none():
    sampler = QueueSampler(5.0, Samples(RuntimeError("down")), clock=Clock())
    assert sampler.tick(None) is None


def test_an_unserved_queue_is_warned_about_once_a_minute(caplog):
    clock = Clock()
    unserved = sample(QueueDepth("gpu", 4, 93.0, served=False), QueueDepth("default", 9, 2.0, served=True))
    samples = Samples(unserved)
    sampler = QueueSampler(5.0, samples, clock=clock)
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]

    sampler.tick(1)
    (message,) = warnings()
    assert "4 task instance(s) wait in queue 'gpu'" in message
    assert "the oldest for 93s" in message
    assert "no live `airflow kestra worker` serves it" in message
    assert "`airflow kestra worker --queues gpu` starts one" in message
    for _ in range(11):  # 55 s later: still one warning
        clock.now += 5
        sampler.tick(1)
    assert len(warnings()) == 1
    clock.now += 5
    sampler.tick(1)
    assert len(warnings()) == 2
    assert not any("'default'" in m for m in warnings())


def test_a_queue_served_again_is_warned_about_at_once_when_it_is_not_any_more(caplog):
    clock = Clock()
    gpu_unserved = sample(QueueDepth("gpu", 1, 1.0, served=False))
    samples = Samples(gpu_unserved, sample(QueueDepth("gpu", 1, 1.0, served=True)), gpu_unserved)
    sampler = QueueSampler(5.0, samples, clock=clock)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(3):
        sampler.tick(1)
        clock.now += 5
    assert sum("'gpu'" in r.getMessage() for r in caplog.records if r.name == LOGGER) == 2


@pytest.mark.parametrize("statsd_tags", [False], ids=["statsd-plain"])
def test_each_sample_is_sent_and_a_queue_that_emptied_goes_back_to_zero(statsd, settled, statsd_tags):
    clock = Clock()
    samples = Samples(
        sample(QueueDepth("gpu", 3, 20.0, served=False), unclaimed=3, claimed=1),
        sample(unclaimed=0, claimed=4),
        sample(unclaimed=0, claimed=4),
    )
    sampler = QueueSampler(5.0, samples, clock=clock)
    for _ in range(3):
        sampler.tick(1)
        clock.now += 5
    settled()

    def got(stat: str) -> list[float]:
        return statsd.received(f"{STATSD_PREFIX}.{stat}")

    assert got(metrics.entity_name(metrics.QUEUE_DEPTH, "gpu")) == [3, 0]  # zero once, then nothing
    assert got(metrics.entity_name(metrics.QUEUE_OLDEST_AGE, "gpu")) == [20, 0]
    assert got(metrics.QUEUE_UNSERVED) == [1, 0, 0]
    assert got(metrics.EXECUTOR_UNCLAIMED) == [3, 0, 0]
    assert got(metrics.EXECUTOR_CLAIMED) == [1, 4, 4]
