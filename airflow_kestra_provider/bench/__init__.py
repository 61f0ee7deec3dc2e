"""``airflow kestra bench``: latency at a fixed open-loop rate, stock Airflow against the Kestra stack."""
