"""Write N synthetic DAGs into a metadata database the way the dag-processor does, without parsing N times.

Run as ``python -m airflow_kestra_provider.bench.scale_loader DAGS_FOLDER COUNT`` with the target
stack's environment. The DAG file is parsed ONCE, for its first DAG (parsing context), and
serialized with Airflow's own serializer; every other DAG is that serialized document with its
dag id changed. The copies are written in batches by ``update_dag_parsing_results_in_db``, the
function the dag-processor itself calls after parsing a file, so the ``dag``, ``dag_version``,
``serialized_dag``, ``dag_code`` and ``dag_tag`` rows (and each DAG's next run) are exactly what a
parse of the generated file would have produced.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from airflow_kestra_provider.bench.scale_dags import SCALE_FILE, scale_dag_id

BATCH = 500
BUNDLE = "dags-folder"


def load(dags_folder: Path, count: int, batch: int = BATCH) -> float:
    """Write ``count`` DAGs; return the seconds it took."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG
    from airflow.utils.session import create_session

    started = time.monotonic()
    DagBundlesManager().sync_bundles_to_db()
    template_id = scale_dag_id(0)
    os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = template_id
    bag = BundleDagBag(
        dag_folder=dags_folder / SCALE_FILE, bundle_path=dags_folder, bundle_name=BUNDLE, safe_mode=False
    )
    del os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"]
    if bag.import_errors or template_id not in bag.dags:
        raise RuntimeError(f"cannot parse the template DAG: {bag.import_errors}")
    template = json.dumps(DagSerialization.to_dict(bag.dags[template_id]))
    quoted = json.dumps(template_id)
    for first in range(0, count, batch):
        dags = [
            LazyDeserializedDAG(data=json.loads(template.replace(quoted, json.dumps(scale_dag_id(i)))))
            for i in range(first, min(count, first + batch))
        ]
        with create_session() as session:
            update_dag_parsing_results_in_db(BUNDLE, None, dags, {}, None, set(), session=session)
        print(f"loaded {min(count, first + batch)}/{count}", flush=True)
    return time.monotonic() - started


def main(argv: list[str]) -> None:
    seconds = load(Path(argv[0]), int(argv[1]))
    print(json.dumps({"load_seconds": round(seconds, 2)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
