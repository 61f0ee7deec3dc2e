"""Helpers that write Airflow metadata rows the way Airflow's own components do."""

from __future__ import annotations

from typing import Any


def register_dag(session: Any, dag: Any, **model_fields: Any) -> Any:
    """Write ``dag`` the way the dag-processor does (its ``dag`` row and serialized DAG), unpaused."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    model = DagModel(
        dag_id=dag.dag_id,
        bundle_name="bundle",
        max_active_runs=16,
        is_paused=False,
        is_stale=False,
        **model_fields,
    )
    session.add(model)
    session.flush()
    SerializedDagModel.write_dag(LazyDeserializedDAG.from_dag(dag), bundle_name="bundle", session=session)
    session.commit()
    return model
