"""Bad configuration fails at start with a message that names the option."""

from __future__ import annotations

import pytest

from airflow_kestra_provider.settings import KestraConfigError
from airflow_kestra_provider.worker.worker import WorkerSettings, require_postgres


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("poll_size", "0"),
        ("thread_count", "-3"),
        ("min_poll_interval", "zero"),
        ("embedded_worker", "maybe"),
        ("execution_api_retry_window", "-1"),
    ],
)
def test_bad_option_is_named(monkeypatch, name, value):
    monkeypatch.setenv(f"AIRFLOW__KESTRA__{name.upper()}", value)
    with pytest.raises(KestraConfigError, match=rf"\[kestra\] {name}"):
        WorkerSettings.from_config(embedded=False)


def test_max_under_min_names_both(monkeypatch):
    monkeypatch.setenv("AIRFLOW__KESTRA__MIN_POLL_INTERVAL", "2")
    monkeypatch.setenv("AIRFLOW__KESTRA__MAX_POLL_INTERVAL", "1")
    with pytest.raises(KestraConfigError) as err:
        WorkerSettings.from_config(embedded=False)
    assert "[kestra] max_poll_interval" in str(err.value)
    assert "[kestra] min_poll_interval" in str(err.value)


def test_defaults(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "7")
    config = WorkerSettings.from_config(embedded=True)
    assert config.concurrency == 7  # worker_concurrency 0 means [core] parallelism
    assert config.thread_count >= 4
    assert (config.min_poll_interval, config.max_poll_interval, config.switch_steps) == (0.025, 0.5, 5)
    assert config.poll_size == 100
    assert config.execution_api_retry_window == 120.0


def test_sqlite_backend_is_refused_naming_the_option():
    from airflow import settings as airflow_settings

    if airflow_settings.engine is None:
        airflow_settings.configure_orm()
    assert airflow_settings.engine is not None
    assert airflow_settings.engine.dialect.name == "sqlite"
    with pytest.raises(KestraConfigError, match=r"\[database\] sql_alchemy_conn"):
        require_postgres()


def test_names_come_from_hostname_callable_and_the_options(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", "airflow.utils.net.get_host_ip_address")
    from airflow.utils.net import get_host_ip_address

    assert WorkerSettings.from_config(embedded=False).name == get_host_ip_address()
    assert WorkerSettings.from_config(embedded=True).name == f"{get_host_ip_address()}-embedded"
    assert WorkerSettings.from_config(embedded=False, name=" gpu-1 ").name == "gpu-1"
    with pytest.raises(KestraConfigError, match="argument --name"):
        WorkerSettings.from_config(embedded=False, name="  ")
