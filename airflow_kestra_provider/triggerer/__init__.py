"""``airflow kestra triggerer``: Airflow's triggerer, woken by NOTIFY instead of a 1 s clock."""
