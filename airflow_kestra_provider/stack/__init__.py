"""Start and stop a whole Airflow stack as subprocesses: used by standalone, bench and tests."""
