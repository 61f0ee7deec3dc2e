"""Executor bookkeeping that needs no database: keys, slots, re-queued tries, revocation."""

from __future__ import annotations

import pytest

from airflow_kestra_provider.executors.kestra_executor import KestraExecutor
from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import ReportedResult
from tests.unit.worker.test_workloads import execute_task


@pytest.fixture
def notified(monkeypatch):
    """Counts the executor's NOTIFYs to the workers."""
    calls: list[None] = []
    monkeypatch.setattr(claims, "notify", lambda session: calls.append(None))
    return calls


@pytest.fixture
def sent(monkeypatch, notified):
    """Rows the executor writes, kept here instead of in a database."""
    rows: list = []
    monkeypatch.setattr(claims, "session_scope", _no_session)
    monkeypatch.setattr(claims, "enqueue", lambda session, job_id, workloads: rows.extend(workloads))
    return rows


class _no_session:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_handed_workloads_become_running_keys_and_slots_stay_honest(sent):
    workloads = [execute_task(run_id=f"manual__{i}") for i in range(3)]
    executor = KestraExecutor(parallelism=4)
    for workload in workloads:
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    assert executor.slots_available == 1
    executor.trigger_tasks(open_slots=2)
    assert len(executor.running) == 2
    assert len(executor.queued_tasks) == 1
    assert executor.slots_available == 1
    executor.trigger_tasks(open_slots=2)
    assert executor.running == {w.ti.key for w in workloads}
    assert executor.queued_tasks == {}
    assert len(sent) == 3


def test_the_end_of_a_try_queued_again_is_no_event(sent):
    """Resume after a deferral: the same try is queued again before the deferral exit is
    reported. That exit must not reach the scheduler (it would fail the task as killed
    externally); the new queueing's end is the event."""
    workload = execute_task()
    executor = KestraExecutor(parallelism=4)
    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    first, second = sent
    executor._settle(ReportedResult(first.id, "success", None))
    assert executor.get_event_buffer() == {}
    assert workload.ti.key in executor.running
    executor._settle(ReportedResult(second.id, "success", None))
    events = executor.get_event_buffer()
    assert list(events) == [workload.ti.key]
    assert events[workload.ti.key][0] == "success"
    assert executor.running == set()


@pytest.mark.parametrize("result", ["dropped", "not_started", "lost", "revoked"])
def test_a_workload_that_never_ran_here_only_frees_its_key(sent, result):
    workload = execute_task()
    executor = KestraExecutor(parallelism=4)
    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    executor._settle(ReportedResult(sent[0].id, result, None))
    assert executor.get_event_buffer() == {}
    assert executor.running == set()


def test_a_failed_end_is_a_failed_event(sent):
    workload = execute_task()
    executor = KestraExecutor(parallelism=4)
    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    executor._settle(ReportedResult(sent[0].id, "failed", "worker w lost"))
    assert executor.get_event_buffer()[workload.ti.key] == ("failed", "worker w lost")


@pytest.mark.parametrize("listen_notify", ["True", "False"])
def test_each_written_batch_notifies_the_workers_once_whatever_listen_notify(
    sent, notified, monkeypatch, listen_notify
):
    # listen_notify says whether this process LISTENs; remote workers may listen either way.
    monkeypatch.setenv("AIRFLOW__KESTRA__LISTEN_NOTIFY", listen_notify)
    executor = KestraExecutor(parallelism=4)
    for i in range(3):
        executor.queue_workload(execute_task(run_id=f"manual__{i}"), session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    assert len(sent) == 3
    assert len(notified) == 1
    executor._send()  # nothing unsent: no statement, no NOTIFY
    assert len(notified) == 1


def test_unwritten_workloads_are_written_at_the_next_heartbeat(monkeypatch, notified):
    attempts: list[int] = []

    def enqueue(session, job_id, workloads):
        attempts.append(len(workloads))
        if len(attempts) == 1:
            raise RuntimeError("database down")

    monkeypatch.setattr(claims, "session_scope", _no_session)
    monkeypatch.setattr(claims, "enqueue", enqueue)
    executor = KestraExecutor(parallelism=4)
    executor.queue_workload(execute_task(), session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    assert executor._unsent
    executor._send()
    assert attempts == [1, 1]
    assert executor._unsent == []


# -- the stock executor gauges, as the workers see them ---------------------------------------------
def test_stock_gauges_count_unclaimed_as_queued_and_claimed_as_running(sent, monkeypatch, statsd, settled):
    from airflow_kestra_provider.executors.queue_sampler import QueueSampler
    from airflow_kestra_provider.queue.claims import QueueSample
    from tests.unit.conftest import STATSD_PREFIX

    monkeypatch.setattr(claims, "report_finished", lambda session, job_id: [])
    executor = KestraExecutor(parallelism=8)
    executor.job_id = 5
    job_ids: list[int | None] = []

    def sample(job_id):
        job_ids.append(job_id)
        return QueueSample([], job_unclaimed=2, job_claimed=1)

    executor._queue_sampler = QueueSampler(5.0, sample)
    for i in range(3):
        executor.queue_workload(execute_task(run_id=f"manual__{i}"), session=None)  # type: ignore[arg-type]
    executor.heartbeat()  # the gauges first, then the hand-off: 3 queued in memory, 2 unclaimed
    executor.heartbeat()  # all 3 written: stock would say 3 running, 0 queued
    assert len(executor.running) == 3 and not executor.queued_tasks
    settled()

    def gauge(name: str) -> list[float]:
        return statsd.received(f"{STATSD_PREFIX}.executor.{name}")

    assert gauge("queued_tasks") == [3 + 2, 2]
    assert gauge("running_tasks") == [1, 1]
    assert gauge("open_slots") == [8, 5]  # as stock computes it
    assert job_ids == [5]  # sampled once within pool_metrics_interval


def test_stock_gauges_until_a_sample_worked(sent, monkeypatch, statsd, settled):
    from airflow_kestra_provider.executors.queue_sampler import QueueSampler
    from tests.unit.conftest import STATSD_PREFIX

    monkeypatch.setattr(claims, "report_finished", lambda session, job_id: [])
    executor = KestraExecutor(parallelism=8)

    def sample(job_id):
        raise RuntimeError("database down")

    executor._queue_sampler = QueueSampler(5.0, sample)
    executor.queue_workload(execute_task(), session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=8)
    executor.heartbeat()
    settled()
    assert statsd.received(f"{STATSD_PREFIX}.executor.running_tasks") == [1]
    assert statsd.received(f"{STATSD_PREFIX}.executor.queued_tasks") == [0]
