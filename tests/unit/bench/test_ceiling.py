from __future__ import annotations

from types import SimpleNamespace

from airflow_kestra_provider.bench import ceiling
from airflow_kestra_provider.bench.ceiling import (
    ceiling_markdown,
    ceiling_of,
    ceiling_rows,
    keeps_up,
    stack_ceiling,
    stack_orders,
)
from airflow_kestra_provider.bench.load import LoadSpec


def step(rate: float, throughput: float | None, p50: float | None, drained: bool = True, done: int = 10):
    return {
        "rate": rate,
        "sent": 10,
        "completed": done,
        "drained": drained,
        "throughput": throughput,
        "latency": None if p50 is None else {"p50": p50},
    }


def cpu_of(parts: dict[str, float]) -> dict:
    """A CPU step whose components use ``parts`` CPU-s per run."""
    rows = [{"component": k, "per_run": v} for k, v in parts.items()]
    return {"cpu": {"components": rows, "total": {"per_run": sum(parts.values())}}}


def report_of(*results: dict, **extra) -> dict:
    """A ceiling report at 5 runs/s with ``results``."""
    return {
        "dag_id": "kestra_bench_noop", "duration": 30, "warmup": 10, "cpu_rate": 5,
        "keep_up": {"share_of_rate": 0.9, "p50_below_seconds": 10.0, "fast_p50_below_seconds": 1.0},
        "started_at": "2026-12-02T00:00:00Z", "machine": {"cpus": 2, "memory_gib": 24},
        "results": list(results), **extra,
    }  # fmt: skip


def test_keeping_up_needs_every_run_the_rate_and_a_bounded_p50():
    assert keeps_up(step(10, 9.5, 0.4))
    assert keeps_up(step(10, 9.5, 1.2))
    assert not keeps_up(step(10, 9.5, 1.2), p50_limit=1.0)
    assert not keeps_up(step(10, 8.5, 0.4))  # finishing slower than sent
    assert not keeps_up(step(10, 9.5, 12.0))  # a backlog grew
    assert not keeps_up(step(10, 9.5, 0.4, drained=False))
    assert not keeps_up(step(10, 9.5, 0.4, done=9))
    assert not keeps_up(step(10, None, None))


def test_the_ceiling_is_the_last_rate_before_the_first_miss():
    steps = [step(4, 3.9, 0.3), step(2, 2.0, 0.2), step(6, 4.0, 9.0), step(8, 7.9, 0.5)]
    assert ceiling_of(steps) == 4
    assert ceiling_of([step(2, 2.0, 0.5), step(4, 3.9, 3.0), step(6, 5.0, 8.0)]) == 4
    assert ceiling_of([step(2, 2.0, 0.5), step(4, 3.9, 3.0)], p50_limit=1.0) == 2
    assert ceiling_of([step(2, 1.0, 5.0)]) is None
    assert ceiling_of([step(2, 2.0, 0.2), {"rate": 4, "skipped": "not kept up"}]) == 2


def test_the_markdown_has_the_ceiling_and_cpu_per_component_side_by_side():
    report = report_of(
        {"stack": "stock", "ceiling": 2, "fast_ceiling": 2, "cpu_step": cpu_of({"scheduler": 0.2, "postgres": 0.1}),
         "steps": [step(2, 2.0, 0.9), step(4, 2.5, 20.0)]},
        {"stack": "kestra", "ceiling": None, "fast_ceiling": None, "cpu_step": cpu_of({"scheduler": 0.05, "kestra-worker-1": 0.02,
         "kestra-worker-2": 0.01}), "steps": [step(2, 1.0, 3.0)]},
    )  # fmt: skip
    text = ceiling_markdown(report)
    assert "| stock | 2.00/s | 900 ms | 2.00/s | 300 ms |" in text
    assert "| kestra | none | - | none | 80 ms |" in text
    assert "| scheduler | 200 ms | 50 ms |" in text
    assert "| kestra-worker | - | 30 ms |" in text
    assert "| stock | 4/s | 10/10 | 2.50/s | 20.00 s | no | no |" in text
    ladder = text.split("Ladder:")[1].strip().splitlines()
    assert ladder[0] == "| stack | rate | finished | throughput | p50 | kept up | kept up fast (p50 < 1 s) |"
    assert {line.count("|") for line in ladder} == {8}  # a header for every column


def test_a_tree_that_ran_tasks_is_split_into_root_tasks_and_other_processes():
    row = {"component": "scheduler", "per_run": 0.2, "own_per_run": 0.05, "reaped_per_run": 0.09}
    cpu = {
        "cpu": {"components": [row, {"component": "postgres", "per_run": 0.05}], "total": {"per_run": 0.25}}
    }
    report = report_of(
        {"stack": "kestra", "ceiling": None, "fast_ceiling": None, "cpu_step": cpu, "steps": []}
    )
    lines = ceiling_markdown(report).splitlines()
    at = lines.index("| scheduler | 200 ms |")
    assert lines[at + 1 : at + 4] == [
        "| scheduler: root process | 50 ms |",
        "| scheduler: task processes | 90 ms |",
        "| scheduler: other processes | 60 ms |",
    ]
    assert "| postgres: root process" not in "\n".join(lines)  # nothing reaped: no parts


def test_cpu_steps_alternate_the_order_of_the_stacks():
    assert stack_orders(["stock", "kestra"], 1) == [["stock", "kestra"]]
    assert stack_orders(["stock", "kestra"], 3) == [
        ["stock", "kestra"],
        ["kestra", "stock"],
        ["stock", "kestra"],
    ]


def test_with_several_cpu_steps_the_cpu_per_run_is_the_median_and_each_step_is_shown():
    def cpu(total, scheduler):
        return cpu_of({"scheduler": scheduler, "postgres": total - scheduler})

    stock_steps = [cpu(0.25, 0.10), cpu(0.21, 0.08), cpu(0.23, 0.12)]
    kestra_steps = [cpu(0.17, 0.05), cpu(0.20, 0.07), cpu(0.18, 0.06)]
    report = report_of(
        {"stack": "stock", "ceiling": 2, "fast_ceiling": None, "cpu_step": stock_steps[0],
         "cpu_steps": stock_steps, "steps": [step(2, 2.0, 1.5)]},
        {"stack": "kestra", "ceiling": 2, "fast_ceiling": 2, "cpu_step": kestra_steps[0],
         "cpu_steps": kestra_steps, "steps": [step(2, 2.0, 0.2)]},
        cpu_orders=stack_orders(["stock", "kestra"], 3),
    )  # fmt: skip
    assert [row["cpu_per_run"] for row in ceiling_rows(report)] == ["230 ms", "180 ms"]
    text = ceiling_markdown(report)
    assert "at 5 runs/s, median of 3 CPU steps (process trees" in text
    assert "| scheduler | 100 ms | 60 ms |" in text
    assert "| postgres | 130 ms | 120 ms |" in text
    assert "| 1 (stock, kestra) | 250 ms | 170 ms |" in text
    assert "| 2 (kestra, stock) | 210 ms | 200 ms |" in text
    assert "| 3 (stock, kestra) | 230 ms | 180 ms |" in text


def test_one_cpu_step_shows_no_table_of_steps():
    cpu = cpu_of({"scheduler": 0.1})
    report = report_of(
        {"stack": "kestra", "ceiling": None, "fast_ceiling": None, "cpu_step": cpu, "steps": []}
    )
    text = ceiling_markdown(report)
    assert "at each CPU step" not in text
    assert "median of" not in text


def test_a_stack_gets_the_cpu_step_then_the_ladder_of_its_load_until_the_first_miss(monkeypatch):
    loads: list[tuple[LoadSpec, bool]] = []
    kept_up = {5.0: True, 2.0: True, 4.0: True, 8.0: False}

    def fake_run_load(spec, trigger, collector, bar, cpu_probe=None):
        loads.append((spec, cpu_probe is not None))
        good = kept_up[spec.rate]
        return SimpleNamespace(to_dict=lambda: step(spec.rate, spec.rate if good else 1.0, 0.3))

    monkeypatch.setattr(ceiling, "run_load", fake_run_load)
    monkeypatch.setattr(ceiling, "_probe", lambda stack, target: SimpleNamespace(sample=dict))
    target = SimpleNamespace(trigger=None, collector=None)
    cpu_spec = LoadSpec("d", 5.0, duration=30.0, warmup=10.0, drain_timeout=60.0)

    result = stack_ceiling(SimpleNamespace(), target, "kestra", [8.0, 2.0, 4.0, 16.0], cpu_spec, quiet=True)

    assert [(spec.rate, probed) for spec, probed in loads] == [
        (5.0, True),
        (2.0, False),
        (4.0, False),
        (8.0, False),
    ]
    assert all((s.dag_id, s.duration, s.warmup, s.drain_timeout) == ("d", 30.0, 10.0, 60.0) for s, _ in loads)
    assert result["ceiling"] == 4.0 and result["cpu_rate"] == 5.0
    assert result["steps"][-1] == {"rate": 16.0, "skipped": "not kept up at 8/s"}
    assert result["cpu_steps"] == [result["cpu_step"]]
