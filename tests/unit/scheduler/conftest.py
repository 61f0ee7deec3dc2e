"""A real metadata schema on the unit-test SQLite database, for scheduler unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def session():
    from airflow import settings
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from sqlalchemy.orm import Session

    import_all_models()
    Base.metadata.drop_all(settings.engine)
    Base.metadata.create_all(settings.engine)
    with Session(settings.engine) as session:
        session.add(DagBundleModel(name="bundle"))
        session.flush()
        session.add_all([DagModel(dag_id=d, bundle_name="bundle") for d in ("one", "two", "three")])
        session.commit()
        yield session
