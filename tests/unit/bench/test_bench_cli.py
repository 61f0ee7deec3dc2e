"""Bad arguments: one clear line on stderr and exit code 2 (no deployment needed)."""

from __future__ import annotations

import socket

import pytest
from airflow.cli import cli_parser


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv, capsys):
    args = cli_parser.get_parser().parse_args(argv)
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--rate", "0"], "rate must be > 0, got 0.0"),
        (["--rate", "2,-1"], "rate must be > 0, got -1.0"),
        (["--rate", "fast"], "rate 'fast' is not a number"),
        (["--rate", "2", "--duration", "0"], "--duration must be > 0"),
        (["--rate", "2", "--warmup", "-1"], "--warmup must be >= 0"),
    ],
)
def test_bad_numbers(argv, needle, capsys):
    code, err = _run(["kestra", "bench", "run", "--password", "x", *argv], capsys)
    assert code == 2
    assert len(err) == 1
    assert needle in err[0]


def test_unreachable_database(capsys):
    port = _closed_port()
    url = f"postgresql+psycopg2://airflow:pw@127.0.0.1:{port}/airflow?connect_timeout=3"
    code, err = _run(["kestra", "bench", "run", "--rate", "2", "--password", "x", "--db-url", url], capsys)
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("airflow kestra bench: error: cannot read the metadata database")
    assert "pw" not in err[0]  # the password is masked


def test_compare_bad_stacks(capsys, tmp_path):
    code, err = _run(
        ["kestra", "bench", "compare", "--rates", "2", "--out", str(tmp_path), "--stacks", "stock,celery"],
        capsys,
    )
    assert code == 2
    assert err == [
        "airflow kestra bench: error: --stacks takes a comma-separated subset of stock,executor,kestra,kestra-remote1,kestra-remote2,kestra-remote4,stock-celery,kestra-celery,stock-edge,kestra-edge, got 'stock,celery'"
    ]


@pytest.mark.parametrize("old", ["ours", "stock,ours", "ours-remote1", "kestra,ours-remote2"])
@pytest.mark.parametrize(
    "command", [["compare", "--rates", "2"], ["chain"], ["ceiling"], ["scale", "--dags", "10"], ["recovery"]]
)
def test_the_former_stack_names_are_refused(old, command, capsys, tmp_path):
    code, err = _run(["kestra", "bench", *command, "--out", str(tmp_path), "--stacks", old], capsys)
    assert code == 2
    assert err == [
        "airflow kestra bench: error: --stacks takes a comma-separated subset of "
        f"stock,executor,kestra,kestra-remote1,kestra-remote2,kestra-remote4,stock-celery,kestra-celery,stock-edge,kestra-edge, got {old!r}"
    ]


def test_scale_refuses_stacks_with_workers(capsys):
    code, err = _run(["kestra", "bench", "scale", "--dags", "10", "--stacks", "stock,kestra-celery"], capsys)
    assert code == 2
    assert err == [
        "airflow kestra bench: error: bench scale runs the scheduler alone: --stacks takes stock, "
        "executor and kestra, got 'kestra-celery'"
    ]


def test_an_engine_stack_without_its_provider_names_the_extra(capsys, tmp_path, monkeypatch):
    from airflow_kestra_provider.stack import engines

    monkeypatch.setitem(
        engines.PROVIDERS, "edge", ("airflow.providers.no_such_edge", "apache-airflow-providers-edge3")
    )
    code, err = _run(
        ["kestra", "bench", "chain", "--out", str(tmp_path), "--stacks", "stock-edge,kestra-edge"], capsys
    )
    assert code == 2
    assert err == [
        "airflow kestra bench: error: --stacks stock-edge needs apache-airflow-providers-edge3: "
        "pip install 'airflow-kestra-provider[engines]'"
    ]


def test_the_kestra_stack_is_the_default():
    parser = cli_parser.get_parser()
    assert parser.parse_args(["kestra", "bench", "compare", "--out", "x"]).stacks == "stock,kestra"
    assert parser.parse_args(["kestra", "bench", "scale", "--dags", "10"]).stacks == "stock,kestra"
    assert parser.parse_args(["kestra", "bench", "recovery"]).stacks == "kestra"


@pytest.mark.parametrize(
    ("dags", "needle"),
    [
        ("0", "--dags must be between 1 and 1000000, got 0"),
        ("2000,2000000", "--dags must be between 1 and 1000000, got 2000000"),
        ("lots", "--dags: 'lots' is not a whole number"),
        ("2000,1.5", "--dags: '1.5' is not a whole number"),
        (",", "--dags needs at least one number of DAGs, e.g. --dags 2000 or --dags 2000,10000"),
    ],
)
def test_scale_bad_dags(dags, needle, capsys):
    code, err = _run(["kestra", "bench", "scale", "--dags", dags, "--stacks", "kestra"], capsys)
    assert code == 2
    assert len(err) == 1
    assert err[0] == f"airflow kestra bench: error: {needle}"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--schedule", "hourly"], "--schedule must be one of daily, assets, got 'hourly'"),
        (["--timeout", "0"], "--timeout must be > 0, got 0.0"),
        (["--schedule", "assets", "--duration", "-5"], "--duration must be > 0, got -5.0"),
        (
            ["--stacks", "stock,ours"],
            "--stacks takes a comma-separated subset of stock,executor,kestra,kestra-remote1,kestra-remote2,kestra-remote4,stock-celery,kestra-celery,stock-edge,kestra-edge",
        ),
    ],
)
def test_scale_bad_options(extra, needle, capsys):
    code, err = _run(["kestra", "bench", "scale", "--dags", "10", *extra], capsys)
    assert code == 2
    assert len(err) == 1
    assert needle in err[0]


def test_scale_dag_sizes():
    from airflow_kestra_provider.cli.bench_command import parse_dag_counts

    assert parse_dag_counts("2000") == [2000]
    assert parse_dag_counts(" 2000, 10_000 ,100000") == [2000, 10000, 100000]
    assert parse_dag_counts(50) == [50]


def test_three_stack_flavours():
    from airflow_kestra_provider.bench.stacks import flavour
    from airflow_kestra_provider.cli.bench_command import _stacks
    from airflow_kestra_provider.cli.standalone_command import STANDALONE_SCHEDULER_ARGS
    from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR

    assert _stacks("stock,executor,kestra") == ["stock", "executor", "kestra"]
    assert flavour("stock").executor == "LocalExecutor"
    assert flavour("executor").executor == KESTRA_EXECUTOR
    assert flavour("executor").scheduler_args == flavour("stock").scheduler_args == ("scheduler",)
    assert flavour("kestra").executor == KESTRA_EXECUTOR
    assert flavour("kestra").scheduler_args == tuple(STANDALONE_SCHEDULER_ARGS)
    assert flavour("kestra").remote_workers == 0
    assert flavour("kestra-remote2").remote_workers == 2
    assert flavour("kestra-remote4").remote_workers == 4
    assert flavour("kestra-remote1").scheduler_args == tuple(STANDALONE_SCHEDULER_ARGS)
    with pytest.raises(
        ValueError,
        match="expected one of stock, executor, kestra, kestra-remote1, kestra-remote2, kestra-remote4",
    ):
        flavour("ours")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["recovery", "--kill", "triggerer"], "--kill takes a comma-separated subset of worker,scheduler"),
        (
            ["recovery", "--kill", "scheduler", "--stacks", "executor"],
            "--stacks for --kill scheduler takes stock and kestra, got 'executor'",
        ),
        (["recovery", "--runs", "0"], "--runs must be >= 1"),
        (["recovery", "--sleep", "0"], "--sleep must be > 0"),
        (["ceiling", "--out", "x", "--rates", "2,zero"], "rate 'zero' is not a number"),
        (["ceiling", "--out", "x", "--rate", "2", "--rate", "-3"], "rate must be > 0, got -3.0"),
        (["compare", "--out", "x", "--rate", "0"], "rate must be > 0, got 0.0"),
        (["ceiling", "--out", "x", "--cpu-rate", "0"], "--cpu-rate must be > 0"),
        (["ceiling", "--out", "x", "--cpu-repeats", "0"], "--cpu-repeats must be >= 1, got 0"),
        (["ceiling", "--out", "x", "--stacks", "stock,celery"], "--stacks takes a comma-separated subset"),
    ],
)
def test_recovery_and_ceiling_bad_options(argv, needle, capsys):
    code, err = _run(["kestra", "bench", *argv], capsys)
    assert code == 2
    assert len(err) == 1
    assert needle in err[0]


@pytest.mark.parametrize(
    "command", [["run", "--password", "x"], ["compare", "--out", "x"], ["ceiling", "--out", "x"]]
)
@pytest.mark.parametrize(
    "rates",
    [
        ["--rate", "2", "--rate", "5,10"],
        ["--rates", "2,5", "--rates", "10"],
        ["--rates", "2", "--rate", "5,10"],
    ],
)
def test_rate_and_rates_are_one_option(command, rates):
    from airflow_kestra_provider.cli.bench_command import parse_rates

    args = cli_parser.get_parser().parse_args(["kestra", "bench", *command, *rates])
    assert parse_rates(args.rates) == [2.0, 5.0, 10.0]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["compare", "--out", "x"], [2.0, 3.0, 5.0, 10.0, 25.0]),
        (["ceiling", "--out", "x"], [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0]),
    ],
)
def test_rates_default_when_none_given(command, expected):
    from airflow_kestra_provider.cli.bench_command import parse_rates
    from airflow_kestra_provider.cli.definition import CEILING_DEFAULT_RATES, COMPARE_DEFAULT_RATES

    args = cli_parser.get_parser().parse_args(["kestra", "bench", *command])
    assert args.rates is None
    default = COMPARE_DEFAULT_RATES if command[0] == "compare" else CEILING_DEFAULT_RATES
    assert parse_rates(args.rates, default=default) == expected
    assert parse_rates(["7"], default=default) == [7.0]  # a given rate replaces the default


def test_run_requires_a_rate(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_parser.get_parser().parse_args(["kestra", "bench", "run", "--password", "x"])
    assert exit_info.value.code == 2
    assert "--rates/--rate" in capsys.readouterr().err
