from __future__ import annotations

import os

import pytest

from airflow_kestra_provider import settings
from airflow_kestra_provider.settings import OPTIONS, KestraConfigError

BAD_VALUES = {
    "integer": ["abc", "-1", "1.5"],
    "float": ["abc", "-1"],
    "boolean": ["maybe"],
}


def _bad_cases():
    for option in OPTIONS:
        for value in BAD_VALUES.get(option.type, []):
            if option.type == "integer" and value == "-1" and (option.minimum or 0) < 0:
                continue
            yield pytest.param(option.name, value, id=f"{option.name}={value}")


@pytest.mark.parametrize(("name", "value"), list(_bad_cases()))
def test_bad_value_names_option_and_range(monkeypatch, name, value):
    monkeypatch.setenv(f"AIRFLOW__KESTRA__{name.upper()}", value)
    with pytest.raises(KestraConfigError) as err:
        settings.validate_all()
    message = str(err.value)
    assert f"[kestra] {name}" in message
    assert settings.OPTIONS_BY_NAME[name].accepted() in message


def test_defaults_are_valid():
    for option in OPTIONS:
        assert os.environ.get(f"AIRFLOW__KESTRA__{option.name.upper()}") is None
    settings.validate_all()
    assert settings.poll_size() == 100
    assert settings.min_poll_interval() == pytest.approx(0.025)
    assert settings.max_poll_interval() == pytest.approx(0.5)
    assert settings.switch_steps() == 5
    assert settings.embedded_worker() is True


def test_thread_count_zero_means_cpu_sized(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert settings.thread_count() == 4
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert settings.thread_count() == 16
    monkeypatch.setenv("AIRFLOW__KESTRA__THREAD_COUNT", "3")
    assert settings.thread_count() == 3


def test_queues_parsed(monkeypatch):
    assert settings.queues() == frozenset()
    monkeypatch.setenv("AIRFLOW__KESTRA__QUEUES", " default, gpu ,")
    assert settings.queues() == frozenset({"default", "gpu"})


def test_poll_size_minus_one_message(monkeypatch):
    monkeypatch.setenv("AIRFLOW__KESTRA__POLL_SIZE", "-1")
    with pytest.raises(
        KestraConfigError,
        match=r"\[kestra\] poll_size = '-1' is invalid: expected an integer >= 1 and <= 10000",
    ):
        settings.poll_size()


def test_docs_configuration_table_is_current():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert settings.options_markdown_table() in docs, (
        "docs/configuration.md is stale: regenerate its table with `python -m airflow_kestra_provider.settings`"
    )


def test_worker_queues_follow_celery_for_remote_workers_and_localexecutor_for_the_embedded_one(monkeypatch):
    monkeypatch.delenv("AIRFLOW__KESTRA__QUEUES", raising=False)
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "general")
    assert settings.worker_queues(embedded=False) == frozenset({"general"})
    assert settings.worker_queues(embedded=True) == frozenset()  # every queue
    assert settings.worker_queues(embedded=False, given="a, b") == frozenset({"a", "b"})
    assert settings.worker_queues(embedded=False, given="a,*") == frozenset()
    monkeypatch.setenv("AIRFLOW__KESTRA__QUEUES", "gpu")
    assert settings.worker_queues(embedded=True) == frozenset({"gpu"})
    assert settings.worker_queues(embedded=False) == frozenset({"gpu"})
    monkeypatch.setenv("AIRFLOW__KESTRA__QUEUES", "*")
    assert settings.worker_queues(embedded=False) == frozenset()
    with pytest.raises(settings.KestraConfigError, match="argument --queues"):
        settings.worker_queues(embedded=False, given=" , ")
