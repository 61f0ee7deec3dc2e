"""Unit-test fixtures shared across the package's test modules."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from tests.statsd_listener import StatsdListener

STATSD_PREFIX = "airflow"  # [metrics] statsd_prefix, Airflow's default
_barriers = itertools.count()


@pytest.fixture(params=[True, False], ids=["statsd-influx-tags", "statsd-plain"])
def statsd_tags(request: pytest.FixtureRequest) -> bool:
    """Whether the ``statsd`` fixture's backend sends tags (InfluxDB style) or drops them."""
    return bool(request.param)


@pytest.fixture
def statsd(statsd_tags: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    """Airflow's real StatsD backend ([metrics] statsd_on, initialized as an ``airflow kestra
    worker`` does it) sending to a listener; with and without InfluxDB-style tags (plain StatsD
    drops tags). Stats goes back to the configured backend (none) afterwards."""
    from airflow_kestra_provider.metrics import initialize_stats

    with StatsdListener() as listener, monkeypatch.context() as env:
        env.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        env.setenv("AIRFLOW__METRICS__STATSD_HOST", listener.host)
        env.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
        env.setenv("AIRFLOW__METRICS__STATSD_PREFIX", STATSD_PREFIX)
        env.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", str(statsd_tags))
        initialize_stats()
        try:
            yield listener
        finally:
            env.undo()
            initialize_stats()


@pytest.fixture
def settled(statsd: StatsdListener) -> Callable[[], None]:
    """Wait until everything sent so far has arrived (a last metric through the same socket)."""
    from airflow.observability import stats

    def wait() -> None:
        name = f"kestra_tests.barrier{next(_barriers)}"
        stats.incr(name)
        assert statsd.wait_for(f"{STATSD_PREFIX}.{name}"), "the StatsD listener received nothing"

    return wait


@pytest.fixture(scope="module")
def session():
    """A real metadata schema on the unit-test SQLite database (one per test module)."""
    from airflow import settings
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.tasklog import LogTemplate
    from sqlalchemy.orm import Session

    import_all_models()
    Base.metadata.drop_all(settings.engine)
    Base.metadata.create_all(settings.engine)
    with Session(settings.engine) as session:
        session.add(DagBundleModel(name="bundle"))
        session.flush()
        session.add_all([DagModel(dag_id=d, bundle_name="bundle") for d in ("one", "two", "three")])
        # `airflow db migrate` writes one; create_all does not (dag runs refer to it)
        session.add(LogTemplate(filename="{{ ti.task_id }}.log", elasticsearch_id="x"))
        session.commit()
        yield session
