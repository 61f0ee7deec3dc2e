"""The rows every bench command prints through Airflow's console (-o table|json|yaml|plain)."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml
from airflow.cli import cli_parser

from airflow_kestra_provider.bench.ceiling import ceiling_rows
from airflow_kestra_provider.bench.recovery import recovery_rows
from airflow_kestra_provider.bench.scale import scale_rows
from airflow_kestra_provider.bench.table import chain_rows, compare_rows, run_rows
from airflow_kestra_provider.cli.bench_command import _print_rows


def _step(rate, p50, p90, p99, sent=10, completed=10, throughput=None, cpu=None):
    step = {
        "rate": rate,
        "sent": sent,
        "completed": completed,
        "drained": completed == sent,
        "latency": {"p50": p50, "p90": p90, "p99": p99, "max": p99},
        "throughput": rate if throughput is None else throughput,
    }
    if cpu is not None:
        step["cpu"] = {"components": [], "total": {"per_run": cpu}}
    return step


RUN_RESULTS = [_step(2, 0.35, 0.6, 1.2), _step(5, 4.0, 9.5, 12.0, completed=8, throughput=3.9)]
SKIPPED = {"rate": 10, "skipped": "backlog at 5/s"}


def test_run_rows():
    assert run_rows([*RUN_RESULTS, SKIPPED]) == [
        {"rate": "2/s", "sent": "10", "finished": "10", "p50": "350 ms", "p90": "600 ms", "p99": "1.20 s",
         "throughput": "2.00/s"},
        {"rate": "5/s", "sent": "10", "finished": "8", "p50": "4.00 s", "p90": "9.50 s", "p99": "12.00 s",
         "throughput": "3.90/s"},
        {"rate": "10/s", "sent": "-", "finished": "skipped (backlog at 5/s)", "p50": "-", "p90": "-", "p99": "-",
         "throughput": "-"},
    ]  # fmt: skip


def test_run_rows_with_cpu_add_the_cpu_per_run():
    rows = run_rows([_step(2, 0.3, 0.4, 0.5, cpu=0.0421), SKIPPED])
    assert [row["cpu_per_run"] for row in rows] == ["42 ms", "-"]
    assert list(rows[0]) == list(rows[1])  # every row has the same columns, for the table


def test_compare_rows_put_the_stacks_side_by_side_rate_by_rate():
    report = {
        "rates": [2, 5],
        "results": {
            "stock": [_step(2, 1.5, 2.0, 3.0), _step(5, 30.0, 50.0, 60.0, completed=6, throughput=3.1)],
            "kestra": [_step(2, 0.2, 0.3, 0.4), SKIPPED | {"rate": 5}],
        },
    }
    rows = compare_rows(report)
    assert [(r["stack"], r["rate"]) for r in rows] == [
        ("stock", "2/s"),
        ("kestra", "2/s"),
        ("stock", "5/s"),
        ("kestra", "5/s"),
    ]
    assert rows[0] == {"stack": "stock", "rate": "2/s", "sent": "10", "finished": "10", "p50": "1.50 s",
                       "p90": "2.00 s", "p99": "3.00 s", "throughput": "2.00/s"}  # fmt: skip
    assert rows[2]["finished"] == "6"
    assert rows[2]["throughput"] == "3.10/s"
    assert rows[3]["finished"] == "skipped (backlog at 5/s)"


def test_chain_rows():
    results = [
        {"stack": "stock", "runs": 20, "completed": 20, "per_link": {"p50": 1.9, "p90": 2.4, "max": 3.1},
         "duration": {"p50": 19.0}},
        {"stack": "kestra", "runs": 20, "completed": 19, "per_link": {"p50": 0.12, "p90": 0.2, "max": 0.5},
         "duration": {"p50": 1.2}},
        {"stack": "executor", "runs": 20, "completed": 0, "per_link": None, "duration": None},
    ]  # fmt: skip
    assert chain_rows(results) == [
        {"stack": "stock", "runs": "20/20", "per_link_p50": "1.90 s", "per_link_p90": "2.40 s",
         "per_link_max": "3.10 s", "run_duration_p50": "19.00 s"},
        {"stack": "kestra", "runs": "19/20", "per_link_p50": "120 ms", "per_link_p90": "200 ms",
         "per_link_max": "500 ms", "run_duration_p50": "1.20 s"},
        {"stack": "executor", "runs": "0/20", "per_link_p50": "-", "per_link_p90": "-", "per_link_max": "-",
         "run_duration_p50": "-"},
    ]  # fmt: skip


def test_ceiling_rows():
    def cpu(total):
        return {
            "cpu": {"components": [{"component": "scheduler", "per_run": total}], "total": {"per_run": total}}
        }

    report = {
        "cpu_rate": 5,
        "results": [
            {"stack": "stock", "ceiling": 4, "fast_ceiling": 2, "cpu_step": cpu(0.31),
             "steps": [_step(2, 0.9, 1.0, 1.1), _step(4, 3.2, 4.0, 5.0), _step(6, 20.0, 30.0, 40.0)]},
            {"stack": "kestra", "ceiling": None, "fast_ceiling": None, "cpu_step": {}, "steps": [_step(2, 12.0, 13.0, 14.0)]},
        ],
    }  # fmt: skip
    assert ceiling_rows(report) == [
        {"stack": "stock", "ceiling": "4.00/s", "p50_at_ceiling": "3.20 s", "fast_ceiling": "2.00/s",
         "cpu_rate": "5/s", "cpu_per_run": "310 ms"},
        {"stack": "kestra", "ceiling": "none", "p50_at_ceiling": "-", "fast_ceiling": "none", "cpu_rate": "5/s",
         "cpu_per_run": "-"},
    ]  # fmt: skip


def test_recovery_rows():
    def state(affected, seconds_max):
        seconds = None if seconds_max is None else {"max": seconds_max}
        return {"affected": affected, "recovered": affected, "seconds": seconds}

    results = [
        {"kill": "worker", "stack": "kestra-remote2", "affected": 6, "recovered": 6, "all_recovered_after": 32.1,
         "by_state_at_kill": {"queued": state(2, 0.8), "running": state(4, 32.1)},
         "run_states": {"success": 12}},
        {"kill": "scheduler", "stack": "stock", "affected": 3, "recovered": 1, "all_recovered_after": None,
         "by_state_at_kill": {"queued": state(0, None), "running": state(3, 306.0)},
         "run_states": {"success": 10, "running": 2}},
    ]  # fmt: skip
    assert recovery_rows(results) == [
        {"kill": "worker", "stack": "kestra-remote2", "affected": "6", "queued_at_kill": "2", "running_at_kill": "4",
         "recovered": "6/6", "all_recovered_after": "32.10 s", "queued_max": "800 ms", "running_max": "32.10 s",
         "runs": "12 success"},
        {"kill": "scheduler", "stack": "stock", "affected": "3", "queued_at_kill": "0", "running_at_kill": "3",
         "recovered": "1/3", "all_recovered_after": "not all", "queued_max": "-", "running_max": "306.00 s",
         "runs": "2 running, 10 success"},
    ]  # fmt: skip


def test_scale_rows():
    stock = {
        "stack": "stock", "dags": 200, "schedule": "daily", "load_seconds": 6.4, "startup_seconds": 5.2,
        "scheduled_seconds": 43.0, "created": 200, "finished": 200, "all_created_seconds": 41.5,
        "all_finished_seconds": 42.6, "runs_created_per_second": 4.82,
        "loops": {"count": 80, "p50": 0.539, "p99": 0.98, "max": 0.984},
    }  # fmt: skip
    kestra = {
        **stock,
        "stack": "kestra",
        "runs_created_per_second": 48.2,
        "all_created_seconds": 4.15,
        "loops": None,
    }
    assert scale_rows([stock, kestra]) == [
        {"stack": "stock", "dags": "200", "load": "6.40 s", "startup": "5.20 s", "all_runs_created": "41.50 s",
         "runs_created_per_s": "4.8", "vs_stock": "-", "all_runs_finished": "42.60 s", "loops": "80",
         "loop_p50": "539 ms", "loop_p99": "980 ms", "loop_max": "984 ms"},
        {"stack": "kestra", "dags": "200", "load": "6.40 s", "startup": "5.20 s", "all_runs_created": "4.15 s",
         "runs_created_per_s": "48.2", "vs_stock": "10.0x", "all_runs_finished": "42.60 s", "loops": "0",
         "loop_p50": "-", "loop_p99": "-", "loop_max": "-"},
    ]  # fmt: skip


@pytest.mark.parametrize("command", ["run", "compare", "chain", "ceiling", "recovery", "scale"])
def test_every_bench_command_takes_airflows_output_option(command):
    required = {
        "run": ["--rate", "2"],
        "compare": ["--out", "x"],
        "ceiling": ["--out", "x"],
        "scale": ["--dags", "10"],
    }.get(command, [])
    parser = cli_parser.get_parser()
    assert parser.parse_args(["kestra", "bench", command, *required]).output == "table"
    args = parser.parse_args(["kestra", "bench", command, *required, "-o", "yaml"])
    assert args.output == "yaml"
    args = parser.parse_args(["kestra", "bench", command, *required, "--output", "json"])
    assert args.output == "json"


def test_json_output_prints_the_rows(capsys):
    rows = run_rows(RUN_RESULTS)
    _print_rows(rows, argparse.Namespace(output="json"))
    assert json.loads(capsys.readouterr().out) == rows


def test_yaml_plain_and_table_outputs(capsys):
    rows = chain_rows([{"stack": "kestra", "runs": 2, "completed": 2, "per_link": {"p50": 0.1, "p90": 0.2, "max": 0.3},
                        "duration": {"p50": 1.0}}])  # fmt: skip
    _print_rows(rows, argparse.Namespace(output="yaml"))
    assert yaml.safe_load(capsys.readouterr().out) == rows
    for output in ("plain", "table"):
        _print_rows(rows, argparse.Namespace(output=output))
        out = capsys.readouterr().out
        assert "per_link_p50" in out
        assert "100 ms" in out
