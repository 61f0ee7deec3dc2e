"""``bench defer``: the generated DAGs, the copy statements, the tables and bad arguments."""

from __future__ import annotations

import ast
from types import SimpleNamespace

import pytest
from airflow.cli import cli_parser

from airflow_kestra_provider.bench.collect import RunRecord
from airflow_kestra_provider.bench.defer import (
    LEAD_PER_TASK,
    LEAD_SECONDS,
    MANY_DAG_ID,
    _copy_sql,
    bench_dags,
    defer_dag_id,
    lead,
    overhead_result,
    started_triggers,
)
from airflow_kestra_provider.bench.table import defer_rows, defer_table


def test_the_generated_dags_parse_and_name_their_dag_ids():
    dags = bench_dags(5)
    assert set(dags) == {"kestra_bench_defer5.py", f"{MANY_DAG_ID}.py"}
    for source in dags.values():
        ast.parse(source)
    assert f'dag_id="{defer_dag_id(5)}"' in dags["kestra_bench_defer5.py"]
    assert "timedelta(seconds=5)" in dags["kestra_bench_defer5.py"]
    assert "end_from_trigger=True" in dags[f"{MANY_DAG_ID}.py"]


def test_the_copy_statement_keeps_every_column_but_the_replaced_ones():
    sql = _copy_sql(
        "trigger",
        ["id", "classpath", "kwargs", "triggerer_id"],
        {"id": None, "triggerer_id": "NULL"},
        "src.id = :t",
    )  # type: ignore[dict-item]
    assert sql == (
        'INSERT INTO trigger ("classpath", "kwargs", "triggerer_id") SELECT src.classpath, src.kwargs, NULL '
        "FROM trigger AS src, generate_series(1, :copies) AS g WHERE src.id = :t"
    )


def _record(run_id: str, latency: float | None, state: str = "success") -> RunRecord:
    import datetime

    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    end = None if latency is None else start + datetime.timedelta(seconds=latency)
    return RunRecord(run_id, state, start, start, end, start)


def test_started_triggers_counts_the_trigger_logs_of_the_run_and_its_copies(tmp_path):
    stack = SimpleNamespace(config=SimpleNamespace(home=tmp_path))
    runs = tmp_path / "logs" / f"dag_id={MANY_DAG_ID}"
    for run_id, name in [
        ("kbench-many10", "attempt=1.log.trigger.7.log"),
        ("kbench-many10-1", "attempt=1.log.trigger.7.log"),
        ("kbench-many10-2", "attempt=1.log"),  # the task's own log: not started yet
        ("kbench-many100-1", "attempt=1.log.trigger.7.log"),  # another measurement's copy
    ]:
        (runs / f"run_id={run_id}" / "task_id=wait").mkdir(parents=True)
        (runs / f"run_id={run_id}" / "task_id=wait" / name).write_text("trigger starting\n")
    assert started_triggers(stack, "kbench-many10") == 2  # type: ignore[arg-type]
    assert started_triggers(stack, "kbench-many1000") == 0  # type: ignore[arg-type]


def test_the_overhead_is_the_latency_minus_the_deferral():
    result = overhead_result(
        "kestra", 5, 3, [_record("a", 5.5), _record("b", 6.0), _record("c", None, "running")]
    )
    assert result["completed"] == 2
    assert result["succeeded"] == 2
    assert result["overhead"]["p50"] == pytest.approx(0.75)  # between 0.5 and 1.0
    assert result["overhead"]["max"] == pytest.approx(1.0)


def _many(count, cpu, lag):
    return {
        "count": count,
        "taken_seconds": 0.5,
        "started_seconds": 2.5,
        "idle_cpu_per_second": {"triggerer": cpu, "triggerer_loop": cpu / 2, "postgres": 0.05},
        "fire_cpu_per_second": {"triggerer": cpu * 4},
        "resume_lag": {"p50": lag, "p99": lag * 2, "max": lag * 3},
    }


def test_the_table_puts_stock_first_in_the_ratios_and_lists_the_deferred_rows():
    results = [
        {
            "stack": "kestra",
            "runs": 3,
            "completed": 3,
            "overhead": {"p50": 0.5, "p90": 0.6, "max": 0.7},
            "many": [_many(1000, 0.02, 0.6)],
        },
        {
            "stack": "stock",
            "runs": 3,
            "completed": 3,
            "overhead": {"p50": 5.0, "p90": 6.0, "max": 7.0},
            "many": [_many(1000, 0.2, 1.2)],
        },
    ]
    text = defer_table(results)
    assert "| stock/kestra |  | 10.00x | 10.00x | 10.00x |" in text
    assert (
        "| kestra | 1,000 | 500 ms | 2.50 s | 10 ms/s | 20 ms/s | 50 ms/s | 600 ms | 1.20 s | 1.80 s | 80 ms/s |"
        in text
    )
    rows = defer_rows(results)
    assert rows[0]["loop_cpu_1000"] == "10 ms/s"
    assert rows[1]["overhead_p50"] == "5.00 s"


def test_a_row_without_a_quiet_window_still_shows_its_firing():
    """A triggerer that had not started every trigger before the window: no "while waiting"
    figures, the reason in the started cell, the resume lag as measured."""
    many = _many(10000, 0.2, 30.0)
    del many["idle_cpu_per_second"]
    many["started_seconds"] = None
    many["window_note"] = "10000 triggers started not within 521 s"
    results = [{"stack": "stock", "runs": 1, "completed": 1, "overhead": {"p50": 1.0}, "many": [many]}]
    text = defer_table(results)
    row = next(line for line in text.splitlines() if line.startswith("| stock | 10,000"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == "not all before the window"
    assert cells[4:7] == ["-", "-", "-"]
    assert cells[7] == "30.00 s"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--defer", "0"], "--defer and --runs must be >= 1"),
        (["--runs", "0"], "--defer and --runs must be >= 1"),
        (["--deferred", "100,x"], "--deferred"),
        (["--deferred", "0"], "--deferred"),
        (["--lead-per-task", "-1"], "--lead-per-task must be >= 0"),
    ],
)
def test_bad_arguments_give_one_line(argv, needle, capsys):
    args = cli_parser.get_parser().parse_args(["kestra", "bench", "defer", *argv])
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and needle in err[0], err


def test_the_lead_grows_with_the_tasks_and_the_option_defaults_to_the_bench_default():
    args = cli_parser.get_parser().parse_args(["kestra", "bench", "defer"])
    assert args.lead_per_task == LEAD_PER_TASK
    assert lead(10_000) == pytest.approx(LEAD_SECONDS + 250.0)
    assert lead(10_000, 0.05) == pytest.approx(LEAD_SECONDS + 500.0)
    assert lead(100, 0.0) == LEAD_SECONDS
