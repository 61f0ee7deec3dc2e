"""The Airflow version gate: tested range from one constant, one-line error, opt-out option."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from airflow_kestra_provider import version_compat
from airflow_kestra_provider.version_compat import (
    TESTED_AIRFLOW_RANGE,
    UntestedAirflowVersion,
    check_airflow_version,
)

ROOT = Path(__file__).resolve().parents[2]
ALLOW = "AIRFLOW__KESTRA__ALLOW_UNTESTED_AIRFLOW"


@pytest.fixture
def airflow_version(monkeypatch):
    """Pretend another Airflow is installed."""

    def fake(version: str) -> None:
        monkeypatch.setattr(version_compat, "AIRFLOW_VERSION", Version(version))

    monkeypatch.delenv(ALLOW, raising=False)
    return fake


def test_the_range_is_the_pyproject_pin():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "apache-airflow"]
    assert len(pins) == 1
    assert pins[0].specifier == SpecifierSet(TESTED_AIRFLOW_RANGE)
    assert f"apache-airflow{TESTED_AIRFLOW_RANGE}" in project["dependencies"]


def test_the_installed_airflow_is_in_range():
    import airflow

    assert Version(airflow.__version__) == version_compat.AIRFLOW_VERSION
    check_airflow_version("airflow kestra scheduler")


@pytest.mark.parametrize("version", ["3.3.2", "3.3.17", "3.3.2rc1", "3.3.3.dev0"])
def test_versions_in_range_pass(airflow_version, version):
    airflow_version(version)
    check_airflow_version("airflow kestra scheduler")


@pytest.mark.parametrize("version", ["3.4.0", "3.4.0.dev0", "3.4.0rc1", "3.3.1", "3.3.0", "3.2.9", "4.0.0"])
def test_a_version_out_of_range_raises_one_line_naming_both_versions(airflow_version, version):
    airflow_version(version)
    with pytest.raises(UntestedAirflowVersion) as err:
        check_airflow_version("airflow kestra worker")
    message = str(err.value)
    assert "\n" not in message
    assert f"Airflow {version} " in message
    assert f"apache-airflow{TESTED_AIRFLOW_RANGE}" in message
    assert "airflow kestra worker does not start" in message
    assert "[kestra] allow_untested_airflow = True" in message
    assert f"{ALLOW}=True" in message


def test_with_the_option_set_it_warns_and_continues(airflow_version, monkeypatch, caplog):
    airflow_version("3.4.1")
    monkeypatch.setenv(ALLOW, "True")
    with caplog.at_level(logging.WARNING, logger=version_compat.__name__):
        check_airflow_version("airflow kestra scheduler")
    (record,) = [r for r in caplog.records if r.name == version_compat.__name__]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "Airflow 3.4.1 " in text and TESTED_AIRFLOW_RANGE in text
    assert "airflow kestra scheduler starts anyway because [kestra] allow_untested_airflow is set" in text


def test_a_bad_option_value_is_a_config_error(airflow_version, monkeypatch):
    from airflow_kestra_provider.settings import KestraConfigError

    airflow_version("3.4.0")
    monkeypatch.setenv(ALLOW, "perhaps")
    with pytest.raises(KestraConfigError, match=r"\[kestra\] allow_untested_airflow = 'perhaps' is invalid"):
        check_airflow_version("airflow kestra scheduler")


def test_the_worker_command_prints_one_line_and_exits_non_zero(airflow_version, capsys):
    from airflow_kestra_provider.cli import worker_command

    airflow_version("3.4.0")
    with pytest.raises(SystemExit) as exit_info:
        worker_command.worker(argparse.Namespace(concurrency=None))
    assert exit_info.value.code == worker_command.FAILURE_EXIT_CODE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("airflow kestra worker: error: Airflow 3.4.0 is outside the range")


def test_the_scheduler_command_stops_with_the_message(airflow_version):
    from airflow_kestra_provider.cli import scheduler_command

    airflow_version("3.4.0")
    args = argparse.Namespace(only_idle=False, num_runs=-1, daemon=False, skip_serve_logs=True)
    with pytest.raises(SystemExit) as exit_info:
        scheduler_command.scheduler.__wrapped__(args)  # type: ignore[attr-defined]  # without the CLI logging
    message = str(exit_info.value.code)
    assert "\n" not in message
    assert message.startswith("Airflow 3.4.0 is outside the range")
    assert "airflow kestra scheduler does not start" in message


def test_the_executor_start_raises(airflow_version):
    from airflow_kestra_provider.executors.kestra_executor import KestraExecutor

    airflow_version("3.4.0")
    with pytest.raises(UntestedAirflowVersion, match="the KestraExecutor does not start"):
        KestraExecutor(parallelism=4).start()
