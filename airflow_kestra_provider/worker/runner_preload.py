"""Imported by the runners' forkserver before it forks a runner (its ``preload`` list).

Importing this module does the work on purpose: it is the forkserver's only way to run code
before its first fork. Nothing else imports it.
"""

from __future__ import annotations

import gc

from airflow_kestra_provider.worker.runner_pool import preload

preload()
gc.freeze()  # fewer copy-on-write pages in every runner and task process
