"""Write N synthetic DAGs into a metadata database the way the dag-processor does, without parsing N times.

Run as ``python -m airflow_kestra_provider.bench.scale_loader DAGS_FOLDER COUNT [--method M]
[--schedule S]`` with the target stack's environment. The DAG file is parsed ONCE, for its first
DAG (parsing context), and serialized with Airflow's own serializer. Then:

* ``--method clone`` (default): that template DAG is written by ``update_dag_parsing_results_in_db``,
  the function the dag-processor itself calls after parsing a file, and its rows are copied N-1
  times in SQL by :mod:`scale_clone` (dag id, row ids and ``dag_hash`` changed; nothing else
  differs between the generated DAGs). About a thousand times faster than the next method.
* ``--method processor``: every DAG is the template document with its dag id (and the asset
  named after it) changed, written in batches through ``update_dag_parsing_results_in_db``.
  Slow (tens of DAGs per second), used for asset-scheduled DAGs, which own asset rows the SQL
  clone does not copy.
* ``--method parse``: no shortcut at all: the whole file is parsed (all N DAGs built and
  serialized) and written through ``update_dag_parsing_results_in_db``, as the dag-processor
  does. The reference the faithfulness test compares the other two methods with (small N only).

With ``--schedule assets`` one event is then registered for the shared asset through Airflow's
``AssetManager``, so every DAG has a queued, unmet condition.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from airflow_kestra_provider.bench.scale_dags import (
    SCALE_FILE,
    SCALE_PREFIX,
    SCALE_WIDTH,
    SCHEDULES,
    SHARED_ASSET,
    scale_dag_id,
)

BATCH = 500
BUNDLE = "dags-folder"
METHODS = ("clone", "processor", "parse")


def _bag(dags_folder: Path) -> Any:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag

    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(
        dag_folder=dags_folder / SCALE_FILE, bundle_path=dags_folder, bundle_name=BUNDLE, safe_mode=False
    )
    if bag.import_errors:
        raise RuntimeError(f"cannot parse {SCALE_FILE}: {bag.import_errors}")
    return bag


def write_parsed(dags_folder: Path, batch: int = BATCH) -> None:
    """Every DAG of the file, each parsed and serialized, via the processor's function."""
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG
    from airflow.utils.session import create_session

    dags = [LazyDeserializedDAG(data=DagSerialization.to_dict(d)) for d in _bag(dags_folder).dags.values()]
    for start in range(0, len(dags), batch):
        with create_session() as session:
            update_dag_parsing_results_in_db(
                BUNDLE, None, dags[start : start + batch], {}, None, set(), session=session
            )


def parse_template(dags_folder: Path) -> str:
    """Parse the generated file once, for its first DAG; return that DAG serialized (JSON text)."""
    from airflow.serialization.serialized_objects import DagSerialization

    template_id = scale_dag_id(0)
    os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = template_id
    try:
        bag = _bag(dags_folder)
    finally:
        del os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"]
    if template_id not in bag.dags:
        raise RuntimeError(f"{SCALE_FILE} does not define {template_id}")
    return json.dumps(DagSerialization.to_dict(bag.dags[template_id]))


def write_through_processor(template: str, first: int, last: int, batch: int = BATCH) -> None:
    """DAGs ``first``..``last`` (inclusive): the template with its id changed, via the processor's function."""
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    template_id = scale_dag_id(0)
    for start in range(first, last + 1, batch):
        dags = [
            LazyDeserializedDAG(data=json.loads(template.replace(template_id, scale_dag_id(i))))
            for i in range(start, min(last, start + batch - 1) + 1)
        ]
        with create_session() as session:
            update_dag_parsing_results_in_db(BUNDLE, None, dags, {}, None, set(), session=session)
        print(f"loaded {min(last, start + batch - 1) + 1}", flush=True)


def clone_in_sql(first: int, last: int) -> None:
    from airflow import settings

    from airflow_kestra_provider.bench.scale_clone import clone

    if settings.engine is None:
        raise RuntimeError("Airflow's ORM is not configured")
    with settings.engine.connect() as conn:
        clone(
            conn,
            scale_dag_id(0),
            SCALE_PREFIX,
            SCALE_WIDTH,
            first,
            last,
            progress=lambda end: print(f"cloned {end + 1}", flush=True),
        )


def queue_shared_asset_event() -> None:
    """One event for the shared asset, registered as an API-made event: queues every consumer DAG."""
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == SHARED_ASSET))
        if asset is None:
            raise RuntimeError(f"asset {SHARED_ASSET} was not written by the loader")
        AssetManager.register_asset_change(asset=asset, session=session, source_is_api=True)


def load(dags_folder: Path, count: int, method: str = "clone", schedule: str = "daily") -> dict[str, Any]:
    """Write ``count`` DAGs; return the seconds it took, split into parse/template and the bulk part."""
    import airflow.settings

    airflow.settings.configure_orm()
    started = time.monotonic()
    if method == "parse":
        write_parsed(dags_folder)
        templated = started
    elif method == "clone":
        template = parse_template(dags_folder)
        write_through_processor(template, 0, 0)
        templated = time.monotonic()
        if count > 1:
            clone_in_sql(1, count - 1)
    else:
        template = parse_template(dags_folder)
        templated = time.monotonic()
        write_through_processor(template, 0, count - 1)
    if schedule == "assets":
        queue_shared_asset_event()
    finished = time.monotonic()
    return {
        "load_seconds": round(finished - started, 2),
        "template_seconds": round(templated - started, 2),
        "bulk_seconds": round(finished - templated, 2),
        "method": method,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="scale_loader")
    parser.add_argument("dags_folder", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--method", choices=METHODS, default="clone")
    parser.add_argument("--schedule", choices=SCHEDULES, default="daily")
    args = parser.parse_args(argv)
    if args.schedule == "assets" and args.method == "clone":
        parser.error("asset-scheduled DAGs own asset rows: use --method processor")
    print(json.dumps(load(args.dags_folder, args.count, args.method, args.schedule)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
