"""Shared test set-up: every test gets its own AIRFLOW_HOME so nothing touches ~/airflow."""

from __future__ import annotations

import os
import tempfile

# Set before anything imports airflow.configuration.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kestra-tests-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
