"""The scheduler's LISTEN connection telling its own echoes from other sessions' notifications,
against a real PostgreSQL (no Airflow tables, no components)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_kestra_provider.scheduler.notify import CHANNEL, Arrival, NotifyWaker, OwnConnections
from tests.integration.conftest import create_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url(embedded_postgres) -> str:
    return create_database(embedded_postgres, "test_notify_sql")


def _notify(engine: sa.Engine, payload: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )


def test_own_echoes_are_told_apart_by_the_sending_session_and_do_not_wake(url):
    scheduler, others = sa.create_engine(url), sa.create_engine(url)
    own = OwnConnections(scheduler)
    waker = NotifyWaker(scheduler)
    try:
        waker.wait(0.01)  # connect and LISTEN
        _notify(scheduler, "task_instance:scheduled")  # the scheduler's loop scheduled one
        _notify(scheduler, "task_instance:success")  # ... and ended one (an EmptyOperator)
        _notify(others, "task_instance:scheduled")  # the triggerer resumed one
        assert waker.wait(5.0)
        while waker.wait(0.3):
            pass
        arrived = waker.take_arrived()
        assert {(a.payload, own.echo(a)) for a in arrived} == {
            ("task_instance:scheduled", True),
            ("task_instance:scheduled", False),
            ("task_instance:success", False),  # not an echo: the loop did not act on it
        }

        def news(arrival: Arrival) -> bool:
            return not own.echo(arrival)

        _notify(scheduler, "dag_run:queued")
        assert not waker.wait(0.5, wakes=news)  # only an echo arrived: the wait went on
        [kept] = waker.take_arrived()  # received and kept for the loop
        assert kept.payload == "dag_run:queued" and own.echo(kept)
        _notify(others, "dag_run:queued")
        assert waker.wait(5.0, wakes=news)
    finally:
        waker.close()
        own.close()
        scheduler.dispose()
        others.dispose()


def test_a_closed_connection_is_forgotten(url):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)  # every session closes its connection
    own = OwnConnections(engine)
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            assert own.echo(Arrival("dag_run:queued", pid))
        assert not own.echo(Arrival("dag_run:queued", pid))
    finally:
        own.close()
        engine.dispose()
