"""Each statement of ``queue/claims.py`` against a real PostgreSQL, one small case each.

A stand-in ``task_instance`` (the four columns the queue reads) beside our own tables keeps these
fast: no Airflow migration, no components.
"""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_kestra_provider.models.tables import metadata
from airflow_kestra_provider.queue import claims
from airflow_kestra_provider.queue.claims import QueuedWorkload, TaskResult
from tests.integration.conftest import create_database
from tests.integration.workload_rows import add_row

pytestmark = pytest.mark.integration

TASK_INSTANCE = """
CREATE TABLE task_instance (
    id UUID PRIMARY KEY, try_number INTEGER NOT NULL, state VARCHAR(20),
    last_heartbeat_at TIMESTAMPTZ, queued_by_job_id INTEGER, start_date TIMESTAMPTZ
)
"""
JOB = (
    "CREATE TABLE job (id INTEGER PRIMARY KEY, state VARCHAR(20), latest_heartbeat TIMESTAMPTZ,"
    " job_type VARCHAR(30) DEFAULT 'SchedulerJob', hostname VARCHAR(500))"
)


@pytest.fixture(scope="module")
def engine(embedded_postgres):
    engine = sa.create_engine(create_database(embedded_postgres, "test_queue_sql"))
    with engine.begin() as conn:
        conn.execute(sa.text(TASK_INSTANCE))
        conn.execute(sa.text(JOB))
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE task_instance, job, kestra_workload, kestra_worker, kestra_scheduler_loop")
        )
    with Session(engine) as session:
        yield session
        session.rollback()


def add_ti(session: Session, state: str = "queued", try_number: int = 1, heartbeat: str | None = None) -> str:
    ti_id = str(uuid.uuid4())
    session.execute(
        sa.text(
            "INSERT INTO task_instance VALUES (:id, :t, :s, "
            "CASE WHEN :hb IS NULL THEN NULL ELSE now() - CAST(:hb AS interval) END, NULL)"
        ),
        {"id": ti_id, "t": try_number, "s": state, "hb": heartbeat},
    )
    return ti_id


def workload(ti_id: str, try_number: int = 1, queue: str = "default", priority: int = 1) -> QueuedWorkload:
    return QueuedWorkload(
        id=str(uuid.uuid4()),
        ti_id=ti_id,
        try_number=try_number,
        dag_id="d",
        task_id="t",
        run_id="r",
        map_index=-1,
        queue=queue,
        priority_weight=priority,
        workload='{"token": "x"}',
    )


def register(session: Session, worker_id: str, queues: tuple[str, ...] = ()) -> None:
    claims.register_worker(
        session,
        worker_id=worker_id,
        name=worker_id,
        hostname="h",
        pid=1,
        embedded=False,
        concurrency=4,
        queues=queues,
        version="test",
    )


def row(session: Session, workload_id: str) -> sa.Row:
    return session.execute(
        sa.text(
            "SELECT worker_id, claimed_at, result, finished_at, reported_at FROM kestra_workload WHERE id = :i"
        ),
        {"i": workload_id},
    ).one()


def test_claim_takes_pending_rows_by_priority_for_its_queues(session):
    register(session, "w1")
    low, high, other = (
        workload(add_ti(session)),
        workload(add_ti(session), priority=5),
        workload(add_ti(session), queue="gpu"),
    )
    claims.enqueue(session, 7, [low, high, other])
    got = claims.claim(session, worker_id="w1", limit=10, queues={"default"})
    assert [g.id for g in got] == [high.id, low.id]
    assert got[0].workload == '{"token": "x"}'
    assert claims.claim(session, worker_id="w1", limit=10, queues={"default"}) == []
    assert [g.id for g in claims.claim(session, worker_id="w1", limit=10, queues=set())] == [other.id]


def test_the_same_try_queued_again_is_claimed_again(session):
    register(session, "w1")
    ti = add_ti(session)
    first = workload(ti)
    claims.enqueue(session, 7, [first])
    assert [g.id for g in claims.claim(session, worker_id="w1", limit=10, queues=set())] == [first.id]
    claims.finish(session, "w1", [TaskResult(first.id, "success", 0)])
    again = workload(ti)  # resumed after a deferral: same ti, same try
    claims.enqueue(session, 7, [again])
    assert [g.id for g in claims.claim(session, worker_id="w1", limit=10, queues=set())] == [again.id]


def test_claim_drops_a_workload_whose_task_instance_left_queued(session):
    register(session, "w1")
    cleared = workload(add_ti(session, state="success"))
    claims.enqueue(session, 7, [cleared])
    assert claims.claim(session, worker_id="w1", limit=10, queues=set()) == []
    assert row(session, cleared.id).result == "dropped"
    assert [r.result for r in claims.report_finished(session, 7)] == ["dropped"]


def test_a_dead_worker_claims_nothing(session):
    register(session, "w1")
    session.execute(sa.text("UPDATE kestra_worker SET state = 'dead'"))
    claims.enqueue(session, 7, [workload(add_ti(session))])
    assert claims.claim(session, worker_id="w1", limit=10, queues=set()) == []
    assert claims.claim(session, worker_id="never-registered", limit=10, queues=set()) == []


def test_only_the_owner_finishes_a_claim(session):
    register(session, "w1")
    w = workload(add_ti(session))
    claims.enqueue(session, 7, [w])
    claims.claim(session, worker_id="w1", limit=10, queues=set())
    claims.finish(session, "w2", [TaskResult(w.id, "failed", 1, "not mine")])
    assert row(session, w.id).finished_at is None
    claims.finish(session, "w1", [TaskResult(w.id, "success", 0)])
    assert row(session, w.id).result == "success"
    claims.finish(session, "w1", [TaskResult(w.id, "failed", 1)])  # a second end changes nothing
    assert row(session, w.id).result == "success"


def test_finishing_claims_notifies_the_schedulers_whether_all_succeeded_and_nothing_does_not(session, engine):
    from airflow_kestra_provider.scheduler.notify import (
        CHANNEL,
        WORKLOADS_FINISHED,
        WORKLOADS_SUCCEEDED,
        NotifyWaker,
    )

    waker = NotifyWaker(engine)
    try:
        waker.wait(0.01)  # connect and LISTEN
        register(session, "w1")
        ok, bad, other = (workload(add_ti(session)) for _ in range(3))
        claims.enqueue(session, 7, [ok, bad, other])
        claims.claim(session, worker_id="w1", limit=10, queues=set())
        session.commit()
        claims.finish(session, "w2", [TaskResult(ok.id, "success", 0)])  # not its claim: nothing ended
        session.commit()
        assert not waker.wait(0.3)
        claims.finish(session, "w1", [TaskResult(ok.id, "success", 0)])
        assert not waker.wait(0.3)  # delivered at commit
        session.commit()
        assert waker.wait(5.0)
        assert waker.payloads == {WORKLOADS_SUCCEEDED: 1}
        claims.finish(session, "w1", [TaskResult(bad.id, "failed", 1), TaskResult(other.id, "success", 0)])
        session.commit()
        assert waker.wait(5.0)
        assert waker.payloads == {WORKLOADS_SUCCEEDED: 1, WORKLOADS_FINISHED: 1}  # one failed
        assert CHANNEL == "airflow_kestra_scheduler"
    finally:
        waker.close()


def test_report_takes_this_jobs_finished_rows_once_and_sweeps_left_queued_ones(session):
    register(session, "w1")
    mine, theirs = workload(add_ti(session)), workload(add_ti(session))
    claims.enqueue(session, 7, [mine])
    claims.enqueue(session, 8, [theirs])
    claims.claim(session, worker_id="w1", limit=10, queues=set())
    claims.finish(session, "w1", [TaskResult(mine.id, "success", 0), TaskResult(theirs.id, "success", 0)])
    assert [(r.workload_id, r.result) for r in claims.report_finished(session, 7)] == [(mine.id, "success")]
    assert claims.report_finished(session, 7) == []
    unclaimed_ti = add_ti(session)
    unclaimed = workload(unclaimed_ti)
    claims.enqueue(session, 7, [unclaimed])
    assert claims.report_finished(session, 7) == []  # still queued: waits for a worker
    session.execute(
        sa.text("UPDATE task_instance SET state = 'scheduled' WHERE id = :i"), {"i": unclaimed_ti}
    )
    assert [(r.workload_id, r.result) for r in claims.report_finished(session, 7)] == [
        (unclaimed.id, "dropped")
    ]


def test_release_hands_an_unstarted_claim_back(session):
    register(session, "w1")
    w = workload(add_ti(session))
    claims.enqueue(session, 7, [w])
    claims.claim(session, worker_id="w1", limit=10, queues=set())
    claims.release(session, "w1", [w.id])
    assert row(session, w.id).claimed_at is None
    register(session, "w2")
    assert [g.id for g in claims.claim(session, worker_id="w2", limit=10, queues=set())] == [w.id]


def test_revoke_withdraws_only_unclaimed_workloads_of_the_try(session):
    register(session, "w1")
    ti = add_ti(session)
    w = workload(ti)
    claims.enqueue(session, 7, [w])
    claims.revoke(session, ti, 1)
    assert row(session, w.id).result == "revoked"
    assert claims.claim(session, worker_id="w1", limit=10, queues=set()) == []


def test_adopt_moves_open_workloads_to_the_new_job(session):
    ti = add_ti(session)
    w = workload(ti)
    claims.enqueue(session, 7, [w])
    [(workload_id, key)] = claims.adopt(session, 9, [ti])
    assert workload_id == w.id
    assert key == ("d", "t", "r", -1, 1)
    session.execute(sa.text("UPDATE task_instance SET state = 'removed'"))
    assert [r.workload_id for r in claims.report_finished(session, 9)] == [w.id]


def test_reaper_settles_a_dead_workers_claims_by_what_their_task_instances_do(session):
    register(session, "dead")
    register(session, "live")
    not_started = workload(add_ti(session))
    running_silent = workload(add_ti(session, state="running", heartbeat="5 minutes"))
    running_alive = workload(add_ti(session, state="running", heartbeat="1 second"))
    ended = workload(add_ti(session, state="success"))
    for w in (not_started, running_silent, running_alive, ended):
        claims.enqueue(session, 7, [w])
    session.execute(sa.text("UPDATE task_instance SET state = 'queued'"))
    claims.claim(session, worker_id="dead", limit=10, queues=set())
    session.execute(
        sa.text(
            "UPDATE task_instance SET state = CASE id WHEN :a THEN 'running' WHEN :b THEN 'running' "
            "WHEN :c THEN 'success' ELSE state END"
        ),
        {"a": running_silent.ti_id, "b": running_alive.ti_id, "c": ended.ti_id},
    )
    session.execute(
        sa.text("UPDATE kestra_worker SET heartbeat_at = now() - interval '1 minute' WHERE id = 'dead'")
    )
    assert claims.reap_dead_workers(session, 30) == (1, 1, 1)
    assert row(session, not_started.id).claimed_at is None  # back to pending
    assert row(session, running_silent.id).result == "failed"
    assert row(session, running_alive.id).finished_at is None  # frozen worker, live task: left
    assert row(session, ended.id).result == "lost"
    assert claims.reap_dead_workers(session, 30) == (0, 0, 0)
    kept = claims.take_over(session, "dead", "dead-again")
    assert kept == {running_alive.id}


def test_purge_deletes_old_reported_rows_and_stopped_workers(session):
    register(session, "w1")
    w = workload(add_ti(session, state="success"))
    claims.enqueue(session, 7, [w])
    claims.report_finished(session, 7)
    claims.stop_worker(session, "w1")
    session.execute(sa.text("UPDATE kestra_workload SET reported_at = now() - interval '2 hours'"))
    session.execute(sa.text("UPDATE kestra_worker SET heartbeat_at = now() - interval '2 hours'"))
    claims.purge(session, 3600)
    assert session.execute(sa.text("SELECT count(*) FROM kestra_workload")).scalar() == 0
    assert session.execute(sa.text("SELECT count(*) FROM kestra_worker")).scalar() == 0


def test_rows_of_a_scheduler_job_that_is_gone_are_taken_over_with_their_task_instances(session):
    session.execute(
        sa.text(
            "INSERT INTO job VALUES (7, 'running', now() - interval '1 minute'), "
            "(8, 'running', now()), (9, 'running', now())"
        )
    )
    orphan_ti, live_ti = add_ti(session, state="running"), add_ti(session, state="running")
    orphan, live = workload(orphan_ti), workload(live_ti)
    claims.enqueue(session, 7, [orphan])  # job 7 stopped heartbeating a minute ago
    claims.enqueue(session, 8, [live])
    [(workload_id, key)] = claims.adopt_orphans(session, 9, threshold=30)
    assert (workload_id, key) == (orphan.id, ("d", "t", "r", -1, 1))
    owners = dict(session.execute(sa.text("SELECT id::text, queued_by_job_id FROM task_instance")).all())
    assert owners == {orphan_ti: 9, live_ti: None}
    assert claims.adopt_orphans(session, 9, threshold=30) == []


def test_heartbeat_returns_the_state_a_fleet_command_set(session):
    register(session, "w1")
    assert claims.heartbeat(session, "w1") == "running"
    assert claims.set_worker_state(session, "w1", "maintenance", ("running",)) == "w1"
    assert claims.heartbeat(session, "w1") == "maintenance"
    assert claims.set_worker_state(session, "w1", "draining", ("running",)) is None  # not running
    claims.stop_worker(session, "w1")
    assert claims.heartbeat(session, "w1") is None


def test_a_worker_in_maintenance_claims_nothing_and_is_reaped_when_silent(session):
    register(session, "w1")
    claims.enqueue(session, 7, [workload(add_ti(session))])
    claims.set_worker_state(session, "w1", "maintenance", ("running",))
    assert claims.claim(session, worker_id="w1", limit=10, queues=set()) == []
    claims.set_worker_state(session, "w1", "running", ("maintenance",))
    assert len(claims.claim(session, worker_id="w1", limit=10, queues=set())) == 1
    claims.set_worker_state(session, "w1", "draining", ("running",))
    session.execute(sa.text("UPDATE kestra_worker SET heartbeat_at = now() - interval '1 minute'"))
    assert claims.reap_dead_workers(session, 30) == (1, 1, 0)


def test_fleet_listing_counts_open_claims_and_takes_the_newest_registration_by_name(session):
    register(session, "old", queues=("a",))
    session.execute(sa.text("UPDATE kestra_worker SET name = 'w', started_at = now() - interval '1 hour'"))
    register(session, "new", queues=("a", "b"))
    session.execute(sa.text("UPDATE kestra_worker SET name = 'w' WHERE id = 'new'"))
    for _ in range(2):
        claims.enqueue(session, 7, [workload(add_ti(session), queue="a")])
    claims.claim(session, worker_id="new", limit=10, queues={"a"})
    listed = {r.id: r for r in claims.list_workers(session)}
    assert listed["new"].running == 2 and listed["old"].running == 0
    assert listed["new"].queues == ("a", "b")
    assert claims.worker_named(session, "w").id == "new"
    assert claims.worker_named(session, "nobody") is None


def test_queue_sample_flags_queues_no_claiming_worker_serves(session):
    register(session, "a-worker", queues=("a",))
    register(session, "resting", queues=("b",))
    claims.set_worker_state(session, "resting", "maintenance", ("running",))
    session.execute(sa.text("UPDATE kestra_worker SET name = id"))
    for queue in ("a", "b", "b"):
        claims.enqueue(session, 7, [workload(add_ti(session), queue=queue)])
    claims.enqueue(session, 8, [workload(add_ti(session), queue="c")])
    sample = claims.sample_queues(session, 7, worker_timeout=30)
    assert [(d.queue, d.waiting, d.served) for d in sample.queues] == [
        ("a", 1, True),
        ("b", 2, False),
        ("c", 1, False),
    ]
    assert (sample.job_unclaimed, sample.job_claimed) == (3, 0)
    register(session, "every")  # no queues: every queue
    assert all(d.served for d in claims.sample_queues(session, 7, worker_timeout=30).queues)


def test_a_name_is_taken_only_by_a_live_worker_that_still_exists(session):
    from airflow_kestra_provider.worker.worker import WorkerNameTaken, check_name_free, this_host

    check_name_free(session, "w", worker_timeout=30)  # nobody
    register(session, "w")
    session.execute(sa.text("UPDATE kestra_worker SET name = 'w', hostname = 'elsewhere'"))
    with pytest.raises(WorkerNameTaken, match="a worker named 'w' is running"):
        check_name_free(session, "w", worker_timeout=30)
    # this host, a pid that is gone: the previous run of this worker, killed
    session.execute(sa.text("UPDATE kestra_worker SET hostname = :h, pid = 999999999"), {"h": this_host()})
    check_name_free(session, "w", worker_timeout=30)
    session.execute(sa.text("UPDATE kestra_worker SET hostname = 'elsewhere'"))
    session.execute(sa.text("UPDATE kestra_worker SET heartbeat_at = now() - interval '1 minute'"))
    check_name_free(session, "w", worker_timeout=30)  # silent past the timeout


def test_two_workers_claiming_at_once_skip_each_others_locked_rows(session, engine):
    register(session, "w1")
    register(session, "w2")
    ids = set()
    for _ in range(4):
        w = workload(add_ti(session))
        claims.enqueue(session, 7, [w])
        ids.add(w.id)
    session.commit()
    with Session(engine) as first, Session(engine) as second:
        first.execute(sa.text("SET lock_timeout = '2s'"))  # blocking instead of skipping would fail
        second.execute(sa.text("SET lock_timeout = '2s'"))
        mine = {c.id for c in claims.claim(first, worker_id="w1", limit=2, queues=set())}  # locks held
        theirs = {c.id for c in claims.claim(second, worker_id="w2", limit=10, queues=set())}
        second.commit()
        first.commit()
    assert len(mine) == 2 and len(theirs) == 2
    assert mine | theirs == ids
    assert claims.claim(session, worker_id="w1", limit=10, queues=set()) == []


# -- the UI page ------------------------------------------------------------------------------------
def test_queue_history_counts_depth_claims_and_completions_per_minute(session):
    add_row(session, created="90 minutes", claimed="89 minutes", finished="88 minutes", result="success")
    add_row(
        session, created="3 hours", claimed="2 hours", finished="10 minutes", result="success"
    )  # long task
    add_row(session, created="2 hours")  # waiting since before the window
    add_row(session, created="30 minutes", claimed="20 minutes", finished="19 minutes", result="failed")
    add_row(session, created="30 minutes", claimed="5 minutes")  # running
    add_row(session, created="10 minutes", finished="9 minutes", result="dropped")  # left queued unclaimed
    add_row(session, created="1 minute")
    history = claims.queue_history(session, minutes=60)
    assert len(history) == 60
    assert history[-1].minute - history[0].minute == 59 * 60
    assert sum(m.claims for m in history) == 2
    assert sum(m.completions for m in history) == 2  # success 10 min ago, failed 19 min ago
    assert history[0].depth == 1  # the one waiting for 2 hours
    assert history[-1].depth == 2  # it, and the one queued a minute ago
    assert max(m.depth for m in history) == 3  # 20-30 minutes ago: + the two queued then
    assert [m.depth for m in history][-25] == 3  # 24-25 minutes ago: 2 hours + the two of 30 minutes
    short = claims.queue_history(session, minutes=5)
    assert (short[0].depth, short[-1].depth) == (1, 2)


def test_latency_percentiles_over_5_minutes_the_window_and_per_minute_for_one_dag(session):
    for seconds in range(1, 11):  # ended a minute ago, queued 1..10 s before
        add_row(
            session,
            created=f"{60 + seconds} seconds",
            claimed=f"{60 + seconds / 2} seconds",  # claimed half way
            started=f"{60 + seconds / 4} seconds",  # started 3/4 of the way
            finished="60 seconds",
            result="success",
        )
    # its task instance is at a later try now / it started before this queueing (deferred, resumed)
    add_row(session, created="50 seconds", claimed="49 seconds", started="48 seconds", try_number=2)
    add_row(session, created="45 seconds", claimed="44 seconds", started="10 minutes")
    add_row(
        session,
        created="30 minutes 100 seconds",
        claimed="30 minutes",
        finished="30 minutes",
        result="failed",
    )
    add_row(session, created="2 minutes", claimed="2 minutes", finished="1 minute", result="not_started")
    add_row(session, created="40 seconds", claimed="30 seconds", dag_id="other")  # running
    session.execute(
        sa.text("INSERT INTO job (id, state, latest_heartbeat, hostname) VALUES (3, 'running', now(), 'h')")
    )
    session.execute(sa.text("INSERT INTO job (id, state, latest_heartbeat) VALUES (4, 'success', now())"))
    got = claims.latency(session)
    run = got["run_latency"]
    assert run["last_5m"]["count"] == 10 and run["last_5m"]["p50"] == pytest.approx(5.5)
    assert run["last_5m"]["p99"] == pytest.approx(9.91)
    assert run["window"]["count"] == 11 and run["window"]["p99"] > 10
    started = got["queued_to_started"]
    assert started["last_5m"]["count"] == 10 and started["window"]["count"] == 10
    assert started["last_5m"]["p50"] == pytest.approx(4.125)  # 0.75, 1.5, ... 7.5
    claim = got["queued_to_claimed"]
    assert (
        claim["last_5m"]["count"] == 13
    )  # the 10, the two running ones, the other DAG's; not_started is left out
    assert claim["last_5m"]["p50"] == pytest.approx(2.5)  # 0.5, 1, ... 5, 1, 1 and 10
    assert claim["window"]["count"] == 14
    assert len(got["series"]) == 60
    assert sum(p["run_count"] for p in got["series"]) == 11
    assert [p["run_latency"]["p50"] for p in got["series"] if p["run_count"] == 10] == [pytest.approx(5.5)]
    assert got["dags"] == [{"dag_id": "d", "ended": 11}]
    assert [(s["id"], s["hostname"]) for s in got["schedulers"]] == [(3, "h")]
    other = claims.latency(session, dag_id="other")
    assert other["run_latency"]["window"] == {"count": 0, "p50": None, "p90": None, "p99": None}
    assert other["queued_to_claimed"]["window"]["count"] == 1
    assert other["queued_to_claimed"]["window"]["p50"] == pytest.approx(10.0)
    assert other["dags"] == got["dags"]  # the picker lists every DAG


def loop_minute(job_id: int, minutes_ago: int, loops: int, **figures: float) -> claims.LoopMinute:
    now = time.time()
    values = {"seconds": 0.1 * loops, "p50": 0.1, "p99": 0.2, "max": 0.3, **figures}
    return claims.LoopMinute(
        job_id=job_id,
        hostname=f"host{job_id}",
        minute=now // 60 * 60 - 60 * minutes_ago,
        loops=loops,
        busy_loops=loops // 2,
        **values,
    )


def test_scheduler_loops_are_stored_per_minute_and_summed_for_the_running_jobs(session):
    session.execute(
        sa.text(
            "INSERT INTO job (id, state, latest_heartbeat, hostname) VALUES"
            " (3, 'running', now(), 'host3'), (4, 'running', now(), 'host4'), (5, 'success', now(), 'h')"
        )
    )
    claims.record_scheduler_loops(session, loop_minute(3, 0, 10))
    claims.record_scheduler_loops(session, loop_minute(3, 0, 40, seconds=8.0, p99=0.5, max=0.9))  # replaces
    claims.record_scheduler_loops(session, loop_minute(3, 2, 60, seconds=3.0))
    claims.record_scheduler_loops(session, loop_minute(3, 30, 60, seconds=60.0))  # not in the last 5 min
    claims.record_scheduler_loops(session, loop_minute(5, 0, 60))  # its job ended
    claims.record_scheduler_loops(session, loop_minute(3, 61, 1))  # older than an hour
    assert session.execute(sa.text("SELECT count(*) FROM kestra_scheduler_loop")).scalar() == 5
    claims.record_scheduler_loops(session, loop_minute(4, 1, 5))  # deletes what is past the hour
    assert session.execute(sa.text("SELECT count(*) FROM kestra_scheduler_loop")).scalar() == 5

    got = claims.latency(session)
    by_job = {s["id"]: s for s in got["schedulers"]}
    assert set(by_job) == {3, 4}
    ours = by_job[3]["loops_5m"]
    assert (ours["minutes"], ours["loops"], ours["busy_loops"]) == (2, 100, 50)
    assert ours["mean"] == pytest.approx(0.11) and ours["p99"] == 0.5 and ours["max"] == 0.9
    assert by_job[4]["loops_5m"]["loops"] == 5
    series = got["scheduler_loops"]
    assert len(series) == 60 and [p["loops"] for p in series[-3:]] == [60, 5, 100]  # job 5's too
    assert series[-1]["mean"] == pytest.approx((8.0 + 6.0) / 100)
    assert series[-31]["loops"] == 60 and series[-30]["loops"] == 0 and series[-30]["mean"] is None
    session.execute(sa.text("UPDATE job SET state = 'success' WHERE id = 4"))
    assert [s["id"] for s in claims.latency(session)["schedulers"]] == [3]


def test_a_stock_scheduler_job_is_listed_without_loops(session):
    session.execute(sa.text("INSERT INTO job (id, state, latest_heartbeat) VALUES (7, 'running', now())"))
    got = claims.latency(session)
    assert [(s["id"], s["loops_5m"]) for s in got["schedulers"]] == [(7, None)]
    assert {p["loops"] for p in got["scheduler_loops"]} == {0}


def test_a_poll_reads_only_the_rows_it_claims_however_deep_the_queue(session):
    """The plan of the poll statement with 5,000 task instances waiting: the pending index in claim
    order (no sort of the queue), task instances and claimed rows looked up one by one (no scan)."""
    register(session, "w1")
    session.execute(
        sa.text(
            "INSERT INTO task_instance (id, try_number, state) SELECT gen_random_uuid(), 1, 'queued' FROM generate_series(1, 5000)"
        )
    )
    session.execute(
        sa.text(
            "INSERT INTO kestra_workload (id, ti_id, try_number, dag_id, task_id, run_id, map_index, queue,"
            " priority_weight, workload, created_at)"
            " SELECT gen_random_uuid(), id, 1, 'd', 't', 'r', -1, 'default', 1, 'x', clock_timestamp()"
            " FROM task_instance"
        )
    )
    session.execute(sa.text("ANALYZE task_instance, kestra_workload, kestra_worker"))
    params = {"worker_id": "w1", "limit": 100, "all_queues": False, "queues": ["default"]}
    plan = "\n".join(r[0] for r in session.execute(sa.text(f"EXPLAIN {claims._CLAIM_SQL.text}"), params))
    assert "Index Scan using kestra_workload_pending" in plan, plan
    assert "Seq Scan on task_instance" not in plan and "Seq Scan on kestra_workload" not in plan, plan
    assert "Sort Key: w.priority_weight" not in plan, plan
    assert len(claims.claim(session, worker_id="w1", limit=100, queues=["default"])) == 100


def test_the_poll_connection_claims_in_autocommit_and_reconnects_after_a_failure(session, engine):
    register(session, "w1")
    ti_ids = [add_ti(session) for _ in range(3)]
    claims.enqueue(session, 1, [workload(ti_id) for ti_id in ti_ids])
    session.commit()
    poller = claims.PollConnection(engine)
    try:
        [first] = poller.claim(worker_id="w1", limit=1, queues=())
        # committed by itself: another connection sees the claim at once
        with engine.connect() as other:
            owner = other.execute(
                sa.text("SELECT worker_id FROM kestra_workload WHERE id = :i"), {"i": first.id}
            ).scalar()
        assert owner == "w1"
        backend = poller._connect().execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend})
        with pytest.raises(sa.exc.OperationalError):
            poller.claim(worker_id="w1", limit=1, queues=())
        assert len(poller.claim(worker_id="w1", limit=5, queues=())) == 2  # a fresh connection
    finally:
        poller.close()
