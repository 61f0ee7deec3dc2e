"""KestraSchedulerJobRunner's small overrides, on the unit-test SQLite schema."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from airflow_kestra_provider.scheduler.notify import OWN_ECHOES, Arrival

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def runner(session):
    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.job import Job

    from airflow_kestra_provider.scheduler.runner import KestraSchedulerJobRunner

    return KestraSchedulerJobRunner(job=Job(), executors=[LocalExecutor()])


def test_stock_idle_sleep_setting_is_replaced_by_the_backoff(runner):
    assert runner.backoff.min_interval == pytest.approx(0.025)
    start = time.monotonic()
    assert runner._scheduler_idle_sleep_time == 0.0  # the stock time.sleep(min(0, ..)) is a no-op
    waited = time.monotonic() - start
    assert 0.02 <= waited < 0.5


class _Waker:
    def __init__(self, up: bool) -> None:
        self.up = up

    @property
    def connected(self) -> bool:
        return self.up


@pytest.mark.parametrize(
    ("triggers", "waker", "expected"),
    [
        (True, _Waker(up=True), 0.5),  # every change notifies: wait max_poll_interval
        (True, _Waker(up=False), 0.025),  # LISTEN down: notifications may be missed
        (False, _Waker(up=True), 0.025),  # triggers not installed: nothing notifies
        (True, None, 0.025),  # no LISTEN (listen_notify off, not PostgreSQL)
    ],
)
def test_idle_wait_is_the_longest_only_while_notifications_cover_every_change(
    runner, triggers, waker, expected
):
    runner._triggers_in_place = triggers
    runner._waker = waker
    runner.backoff.busy(time.monotonic())  # just after work: the back-off is at its minimum
    assert runner._idle_wait() == pytest.approx(expected)


def test_executor_events_count_as_work_before_they_are_popped(runner, session):
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.state import TaskInstanceState

    executor = runner.executors[0]
    executor.event_buffer = {
        TaskInstanceKey("nope", "t", f"r{i}", 1, -1): (TaskInstanceState.SUCCESS, None) for i in range(3)
    }
    assert runner._process_executor_events(executor=executor, session=session) == 3
    assert executor.event_buffer == {}
    assert runner._loop.executor_events == 3


def test_dag_lookups_share_one_bounded_cache(runner):
    from airflow_kestra_provider.scheduler.dag_cache import KestraDagCache

    assert isinstance(runner.scheduler_dag_bag, KestraDagCache)
    assert runner.scheduler_dag_bag is runner.dag_cache
    assert runner.dag_cache._dags.maxsize == 10000


def test_current_dag_comes_from_the_cache(runner, session):
    from tests.unit.scheduler.test_dag_cache import _write

    _write(session, "one", "a")
    dag = runner._get_current_dag("one", session)
    assert dag is not None and dag.task_ids == ["a"]
    assert runner._get_current_dag("one", session) is dag
    assert (runner.dag_cache.hits, runner.dag_cache.misses) == (1, 1)
    assert runner._get_current_dag("does_not_exist", session) is None


def test_min_above_max_interval_fails_at_start_naming_the_options(session, monkeypatch):
    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.job import Job

    from airflow_kestra_provider.scheduler.runner import KestraSchedulerJobRunner
    from airflow_kestra_provider.settings import KestraConfigError

    monkeypatch.setenv("AIRFLOW__KESTRA__MIN_POLL_INTERVAL", "2")
    monkeypatch.setenv("AIRFLOW__KESTRA__MAX_POLL_INTERVAL", "1")
    with pytest.raises(KestraConfigError, match=r"\[kestra\] min_poll_interval .*max_poll_interval"):
        KestraSchedulerJobRunner(job=Job(), executors=[LocalExecutor()])


def test_gc_threshold_is_read_at_start_and_set_for_the_loop(session, monkeypatch):
    import gc

    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.job import Job

    from airflow_kestra_provider.scheduler.runner import KestraSchedulerJobRunner, set_gc_threshold
    from airflow_kestra_provider.settings import KestraConfigError

    monkeypatch.setenv("AIRFLOW__KESTRA__SCHEDULER_GC_THRESHOLD", "-1")
    with pytest.raises(KestraConfigError, match=r"\[kestra\] scheduler_gc_threshold"):
        KestraSchedulerJobRunner(job=Job(), executors=[LocalExecutor()])
    monkeypatch.delenv("AIRFLOW__KESTRA__SCHEDULER_GC_THRESHOLD")
    assert KestraSchedulerJobRunner(job=Job(), executors=[LocalExecutor()])._gc_threshold == 50000
    before = gc.get_threshold()
    try:
        set_gc_threshold(0)
        assert gc.get_threshold() == before
        set_gc_threshold(50000)
        assert gc.get_threshold() == (50000, *before[1:])
    finally:
        gc.set_threshold(*before)


def test_each_loop_sends_its_duration_work_and_runs(runner, session, statsd, settled):
    """A loop runs from one ``_do_scheduling`` to the next, or to the idle-sleep read that
    follows an idle loop (the wait is not part of it); its executor events count as work."""
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.state import TaskInstanceState

    from airflow_kestra_provider import metrics
    from tests.unit.conftest import STATSD_PREFIX

    executor = runner.executors[0]
    runner._do_scheduling(session)  # loop 1
    runner._loop.dag_runs_created = 3  # as if it had created three runs
    time.sleep(0.05)
    executor.event_buffer = {
        TaskInstanceKey("nope", "t", f"r{i}", 1, -1): (TaskInstanceState.SUCCESS, None) for i in range(2)
    }
    runner._process_executor_events(executor=executor, session=session)
    runner._do_scheduling(session)  # loop 1 ends, loop 2 (idle) begins
    assert runner._scheduler_idle_sleep_time == 0.0  # loop 2 ends before the idle wait
    assert runner._scheduler_idle_sleep_time == 0.0  # no loop in progress: nothing sent
    settled()

    def got(stat: str) -> list[float]:
        return statsd.received(f"{STATSD_PREFIX}.{stat}")

    first, _ = got(metrics.SCHEDULER_LOOP_DURATION)  # milliseconds
    assert first >= 50
    assert got(metrics.SCHEDULER_BUSY_LOOPS) == [1]
    assert got(metrics.SCHEDULER_RUNS_CREATED) == [3]
    assert runner._stats == {"loops": 2, "busy_loops": 1}


@pytest.mark.parametrize(
    ("notified", "capped", "due"),
    [
        (True, False, False),  # the task instances' own notifications tell about freed slots
        (True, True, True),  # the last pass ran out of slots: freed ones matter
        (False, False, True),  # no LISTEN: the event is the only sign
    ],
)
def test_executor_events_make_the_critical_section_due_only_when_nothing_else_tells(
    runner, session, monkeypatch, notified, capped, due
):
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.state import TaskInstanceState

    monkeypatch.setattr(type(runner), "_notified", lambda self: notified)
    runner._critical_due = False
    runner._critical_capped = capped
    executor = runner.executors[0]
    executor.event_buffer = {TaskInstanceKey("nope", "t", "r", 1, -1): (TaskInstanceState.SUCCESS, None)}
    runner._process_executor_events(executor=executor, session=session)
    assert runner._critical_due is due


def test_a_pass_that_queued_fewer_than_it_could_take_is_not_repeated_while_notified(
    runner, session, monkeypatch
):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    from airflow_kestra_provider.scheduler import scheduled_tis
    from airflow_kestra_provider.scheduler.work import LoopWork

    queued = {"n": 0}
    monkeypatch.setattr(
        SchedulerJobRunner, "_critical_section_enqueue_task_instances", lambda self, session: queued["n"]
    )
    monkeypatch.setattr(type(runner), "_notified", lambda self: True)
    monkeypatch.setattr(type(runner), "_critical_section_limit", lambda self: 32)
    monkeypatch.setattr(scheduled_tis, "any_scheduled", lambda session: True)
    runner._loop = LoopWork()
    for n, capped in ((3, False), (32, True)):
        queued["n"] = n
        runner._critical_due = True
        assert runner._critical_section_enqueue_task_instances(session) == n
        assert runner._critical_capped is capped
        assert runner._critical_due is capped  # only a full pass may have left some waiting


OWN_PID, OTHER_PID = 101, 202  # backend pids of the scheduler's sessions and of someone else's


class _WakingWaker:
    connected = True

    def __init__(self, arrivals: set[Arrival]) -> None:
        self.arrivals = arrivals

    def wait(self, timeout: float, wakes) -> bool:
        return any(wakes(arrival) for arrival in self.arrivals)

    def take_arrived(self) -> set[Arrival]:
        return self.arrivals


class _Own:
    def echo(self, arrival: Arrival) -> bool:
        return arrival.payload in OWN_ECHOES and arrival.pid == OWN_PID


@pytest.mark.parametrize(
    ("arrivals", "woken", "due"),
    [
        ({Arrival("kestra_workload:finished", OTHER_PID)}, True, False),  # events say it in the loop
        ({Arrival("kestra_workload:succeeded", OTHER_PID)}, False, False),  # success said it first
        ({Arrival("dag_run:queued", OTHER_PID)}, True, False),  # the run's start schedules them
        ({Arrival("task_instance:scheduled", OTHER_PID)}, True, True),  # the triggerer resumed one
        ({Arrival("task_instance:success", OTHER_PID)}, True, True),
        ({Arrival("task_instance:success", OWN_PID)}, True, True),  # the loop ended one itself
        ({Arrival("task_instance:scheduled", OWN_PID)}, False, False),  # the loop's own echo
        ({Arrival("dag_run:queued", OWN_PID)}, False, False),
        ({Arrival("asset_dag_run_queue", OTHER_PID)}, True, False),  # the creation step's news
    ],
)
def test_a_wake_up_makes_the_critical_section_due_by_what_it_announces(runner, arrivals, woken, due):
    runner._triggers_in_place = True
    runner._waker = _WakingWaker(arrivals)
    runner._own = _Own()
    runner._critical_due = False
    runner._critical_capped = False  # the last pass had executor slots to spare
    runner._creation_due = False
    assert runner._scheduler_idle_sleep_time == 0.0
    assert runner._critical_due is due
    assert runner._creation_due is any(a.payload == "asset_dag_run_queue" for a in arrivals)
    assert runner._news(next(iter(arrivals))) is woken


@pytest.mark.parametrize("capped", [False, True])
def test_results_that_all_succeeded_wake_only_a_scheduler_short_of_executor_slots(runner, capped):
    runner._own = _Own()
    runner._critical_capped = capped
    assert runner._news(Arrival("kestra_workload:succeeded", OTHER_PID)) is capped
    assert runner._news(Arrival("kestra_workload:finished", OTHER_PID))  # one failed: always


def _loop_work(**counts):
    from airflow_kestra_provider.scheduler.work import LoopWork

    return LoopWork(**counts)


@pytest.mark.parametrize(
    ("work", "notified", "queued_run_due", "follow_up"),
    [
        ({}, False, False, False),  # idle: the idle wait, always
        ({"ti_updates": 2, "tis_queued": 1}, False, False, True),  # no LISTEN: at once, as stock
        ({"ti_updates": 2, "tis_queued": 1}, True, False, False),  # what follows will notify
        ({"ti_updates": 2, "capped": True}, True, False, True),  # a step stopped with more left
        ({"tis_queued": 32, "critical_capped": True}, True, False, True),
        ({"dag_runs_created": 1}, True, False, True),  # a catching-up DAG may be due again
        ({"dag_runs_changed": 1, "dag_runs_ended": 1}, True, False, False),
        ({"dag_runs_changed": 1, "dag_runs_ended": 1}, True, True, True),  # max_active_runs
        ({"dag_runs_changed": 1}, True, True, False),  # started, none ended: nothing new
    ],
)
def test_the_next_loop_starts_at_once_only_for_what_no_notification_announces(
    runner, session, monkeypatch, work, notified, queued_run_due, follow_up
):
    from airflow_kestra_provider.scheduler import queued_runs

    monkeypatch.setattr(type(runner), "_notified", lambda self: notified)
    monkeypatch.setattr(queued_runs, "any_queued_run_due", lambda session: queued_run_due)
    runner._loop = _loop_work(**work)
    assert runner._follow_up_due(session) is follow_up


def test_a_loop_that_needs_no_follow_up_reports_no_work_to_the_stock_loop(runner, session, monkeypatch):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    monkeypatch.setattr(SchedulerJobRunner, "_do_scheduling", lambda self, session: 3)
    for follow_up, reported in ((False, 0), (True, 3)):
        monkeypatch.setattr(type(runner), "_follow_up_due", lambda self, session, due=follow_up: due)
        assert runner._do_scheduling(session) == reported
        assert runner._loop.total == 3  # the loop's metrics still count its work


@pytest.mark.parametrize(
    ("notified", "capped", "reported"),
    [(True, False, 0), (True, True, 1), (False, False, 1)],
)
def test_executor_events_skip_the_idle_wait_only_when_freed_slots_matter(
    runner, session, monkeypatch, notified, capped, reported
):
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.state import TaskInstanceState

    monkeypatch.setattr(type(runner), "_notified", lambda self: notified)
    runner._critical_capped = capped
    executor = runner.executors[0]
    executor.event_buffer = {TaskInstanceKey("nope", "t", "r", 1, -1): (TaskInstanceState.SUCCESS, None)}
    assert runner._process_executor_events(executor=executor, session=session) == reported
    assert runner._loop.executor_events == 1


@pytest.mark.parametrize("recheck", [1.0, 0.0])
def test_the_stock_per_loop_checks_keep_the_stock_idle_cadence(runner, session, monkeypatch, recheck):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    calls: list[str] = []
    monkeypatch.setattr(
        SchedulerJobRunner, "_enqueue_executor_callbacks", lambda self, session: calls.append("callbacks")
    )
    monkeypatch.setattr(
        SchedulerJobRunner, "_enqueue_connection_tests", lambda self, *, session: calls.append("tests")
    )
    runner._recheck = recheck
    for _ in range(3):  # three loops within the interval
        runner._enqueue_executor_callbacks(session)
        runner._enqueue_connection_tests(session=session)
    assert calls == (["callbacks", "tests"] if recheck else ["callbacks", "tests"] * 3)
    for check in list(runner._periodic_at):
        runner._periodic_at[check] -= recheck  # the interval has passed
    runner._enqueue_executor_callbacks(session)
    runner._enqueue_connection_tests(session=session)
    assert calls[-2:] == ["callbacks", "tests"]


def _count_creation_steps(runner, session, monkeypatch) -> list[int]:
    """Patch the queries of the creation step: returns the list its runs are appended to."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    from airflow_kestra_provider.scheduler import due_dags

    steps: list[int] = []
    monkeypatch.setattr(
        SchedulerJobRunner,
        "_create_dagruns_for_partitioned_asset_dags",
        lambda self, session: steps.append(1) or set(),
    )
    monkeypatch.setattr(due_dags, "ready_asset_triggered_dags", lambda *args: {})
    monkeypatch.setattr(due_dags, "lock_due_dags", lambda session, limit: [])
    return steps


def _creation_step(runner, session) -> None:
    from airflow.utils.sqlalchemy import prohibit_commit

    with prohibit_commit(session) as guard:
        runner._create_dagruns_for_dags(guard, session)


def test_a_notified_scheduler_looks_for_due_dags_once_per_recheck_interval(runner, session, monkeypatch):
    steps = _count_creation_steps(runner, session, monkeypatch)
    monkeypatch.setattr(type(runner), "_notified", lambda self: True)
    runner._recheck = 1.0
    for _ in range(3):  # the first loop, then two loops within the interval
        _creation_step(runner, session)
    assert len(steps) == 1
    runner._periodic_at["dag_run_creation"] -= 1.0  # the interval has passed
    _creation_step(runner, session)
    assert len(steps) == 2


@pytest.mark.parametrize("cause", ["asset_event", "dag_unblocked", "runs_created"])
def test_what_may_make_a_dag_ready_early_makes_the_next_creation_step_run(
    runner, session, monkeypatch, cause
):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    from airflow_kestra_provider.scheduler import due_dags

    steps = _count_creation_steps(runner, session, monkeypatch)
    monkeypatch.setattr(type(runner), "_notified", lambda self: True)
    runner._recheck = 60.0
    _creation_step(runner, session)  # the first loop's
    _creation_step(runner, session)
    assert len(steps) == 1
    if cause == "asset_event":  # NOTIFY from asset_dag_run_queue
        runner._waker = _WakingWaker({Arrival("asset_dag_run_queue", OTHER_PID)})
        runner._own = _Own()
        runner._take_news()
    elif cause == "dag_unblocked":  # a loop set a DAG's exceeds_max_non_backfill to false
        monkeypatch.setattr(SchedulerJobRunner, "_do_scheduling", lambda self, session: 0)
        monkeypatch.setattr(type(runner), "_follow_up_due", lambda self, session: False)
        monkeypatch.setattr(
            type(runner),
            "_begin_batch",
            lambda self, dags=None: setattr(self._loop, "dags_unblocked", 1) or self._batch,
        )
        runner._do_scheduling(session)
    else:  # a step that created a run (a catching-up DAG may be due again at once)
        runner._creation_due = True
        monkeypatch.setattr(due_dags, "lock_due_dags", lambda session, limit: [SimpleNamespace(dag_id="d")])
        monkeypatch.setattr(type(runner), "_create_timed_runs", lambda self, dags, guard, session: None)
        _creation_step(runner, session)
        assert len(steps) == 2
        monkeypatch.setattr(due_dags, "lock_due_dags", lambda session, limit: [])
    before = len(steps)
    _creation_step(runner, session)
    assert len(steps) == before + 1
    _creation_step(runner, session)  # nothing new since: the interval again
    assert len(steps) == before + 1


@pytest.mark.parametrize(("notified", "recheck"), [(False, 1.0), (True, 0.0)])
def test_without_notifications_or_interval_every_loop_looks_for_due_dags(
    runner, session, monkeypatch, notified, recheck
):
    steps = _count_creation_steps(runner, session, monkeypatch)
    monkeypatch.setattr(type(runner), "_notified", lambda self: notified)
    runner._recheck = recheck
    for _ in range(3):
        _creation_step(runner, session)
    assert len(steps) == 3
