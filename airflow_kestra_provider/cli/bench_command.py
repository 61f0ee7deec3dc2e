"""``airflow kestra bench ...``: handlers (argument checks, printing, exit codes).

Every command prints its result rows through Airflow's console (``-o table|json|yaml|plain``,
as ``airflow dags list``) on stdout; progress and messages go to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from airflow_kestra_provider.bench.target import BenchUsageError
from airflow_kestra_provider.cli.definition import CEILING_DEFAULT_RATES, COMPARE_DEFAULT_RATES

USAGE_EXIT_CODE = 2
F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Report :class:`BenchUsageError` as one line on stderr and exit 2."""

    @wraps(func)
    def wrapper(args: argparse.Namespace) -> Any:
        try:
            return func(args)
        except BenchUsageError as err:
            print(f"airflow kestra bench: error: {err}", file=sys.stderr, flush=True)
            sys.exit(USAGE_EXIT_CODE)
        except KeyboardInterrupt:
            print("airflow kestra bench: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _output(args: argparse.Namespace) -> str:
    return getattr(args, "output", None) or "table"


def _print_rows(rows: list[dict[str, str]], args: argparse.Namespace) -> None:
    """The command's result rows on stdout, as ``-o/--output`` says (table by default)."""
    from airflow.cli.simple_table import AirflowConsole

    AirflowConsole().print_as(data=rows, output=_output(args))


def _positive(name: str, value: float | None, allow_zero: bool = False) -> float:
    if value is None or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise BenchUsageError(f"{name} must be {bound}, got {value}")
    return float(value)


def parse_rates(raw: str | list[Any] | None, default: str | None = None) -> list[float]:
    """Rates from ``--rate 2 --rate 5``, ``--rates 2,5`` or a mix; each must be > 0.

    ``default`` (comma-separated) applies when no rate was given at all.
    """
    if not raw and default is not None:
        raw = default
    items: list[str] = []
    for part in raw if isinstance(raw, list) else [raw or ""]:
        items.extend(x.strip() for x in str(part).split(",") if x.strip())
    if not items:
        raise BenchUsageError("give at least one rate (runs per second)")
    rates = []
    for item in items:
        try:
            rate = float(item)
        except ValueError:
            raise BenchUsageError(f"rate {item!r} is not a number") from None
        rates.append(_positive("rate", rate))
    return rates


def _stacks(raw: str) -> list[str]:
    from airflow_kestra_provider.bench.stacks import FLAVOURS, flavour
    from airflow_kestra_provider.stack.engines import missing_provider

    names = [x.strip() for x in raw.split(",") if x.strip()]
    bad = [n for n in names if n not in FLAVOURS]
    if not names or bad:
        raise BenchUsageError(f"--stacks takes a comma-separated subset of {','.join(FLAVOURS)}, got {raw!r}")
    for name in names:
        distribution = missing_provider(flavour(name).engine)
        if distribution:
            raise BenchUsageError(
                f"--stacks {name} needs {distribution}: pip install 'airflow-kestra-provider[engines]'"
            )
    return names


@_one_line_errors
def bench_run(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.load import LoadSpec, run_load
    from airflow_kestra_provider.bench.progress import ProgressBar
    from airflow_kestra_provider.bench.table import run_rows
    from airflow_kestra_provider.bench.target import Target, resolve_endpoints

    rates = parse_rates(args.rates)
    duration = _positive("--duration", args.duration)
    warmup = _positive("--warmup", args.warmup, allow_zero=True)
    drain = _positive("--drain-timeout", args.drain_timeout)
    endpoints = resolve_endpoints(args.api_url, args.username, args.password, args.db_url)
    target = Target(endpoints, args.dag)
    results: list[dict[str, Any]] = []
    try:
        target.check()
        cpu_probe = _cpu_probe(target) if getattr(args, "cpu", False) else None
        _log(
            f"bench {args.dag} at {endpoints.api_url}: rates {', '.join(f'{r:g}' for r in rates)}/s, "
            f"{duration:g} s each after {warmup:g} s warm-up"
        )
        saturated_at: float | None = None
        for rate in rates:
            if saturated_at is not None:
                results.append({"rate": rate, "skipped": f"backlog at {saturated_at:g}/s"})
                continue
            spec = LoadSpec(args.dag, rate, duration, warmup, drain)
            result = run_load(
                spec,
                target.trigger,
                target.collector,
                ProgressBar(f"{rate:g} runs/s"),
                cpu_probe=None if cpu_probe is None else cpu_probe.sample,
            )
            if result.sent == 0:
                raise BenchUsageError(f"no run could be triggered: {result.first_error}")
            results.append(result.to_dict())
            if not result.drained:
                saturated_at = rate
    finally:
        target.close()
    if args.json:
        print(json.dumps({"dag_id": args.dag, "api_url": endpoints.api_url, "results": results}, indent=2))
    else:
        _print_rows(run_rows(results), args)
        if _output(args) in ("table", "plain"):
            _print_cpu(results)


def _cpu_probe(target: Any) -> Any:
    """Find the deployment's component processes (this AIRFLOW_HOME) and its PostgreSQL server."""
    from urllib.parse import urlsplit

    from airflow.configuration import AIRFLOW_HOME

    from airflow_kestra_provider.bench.cpu import (
        POSTGRES,
        CpuProbe,
        describe,
        find_components,
        postgres_postmaster,
    )

    roots = find_components(AIRFLOW_HOME, api_port=urlsplit(target.endpoints.api_url).port)
    if not roots:
        raise BenchUsageError(
            f"--cpu: no Airflow component process with AIRFLOW_HOME={AIRFLOW_HOME} runs as this user"
        )
    postmaster = postgres_postmaster(target.engine)
    if postmaster is not None:
        roots[POSTGRES] = postmaster
    _log(f"--cpu: sampling {describe(roots)}" + ("" if postmaster else " (database not on this machine)"))
    return CpuProbe(roots)


def _print_cpu(results: list[dict[str, Any]]) -> None:
    from airflow_kestra_provider.bench.cpu import cpu_table

    for result in results:
        if "cpu" in result:
            print(f"\n{result['rate']:g} runs/s, {cpu_table(result['cpu'])}", end="")


@_one_line_errors
def bench_compare(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.compare import compare
    from airflow_kestra_provider.bench.plot import require_matplotlib
    from airflow_kestra_provider.bench.table import compare_rows
    from airflow_kestra_provider.cli.standalone_command import example_dags_folder

    require_matplotlib()  # before an hour of load, not after it

    rates = parse_rates(args.rates, default=COMPARE_DEFAULT_RATES)
    duration = _positive("--duration", args.duration)
    warmup = _positive("--warmup", args.warmup, allow_zero=True)
    drain = _positive("--drain-timeout", args.drain_timeout)
    if args.repeat < 1:
        raise BenchUsageError(f"--repeat must be >= 1, got {args.repeat}")
    plan = _plan(args, example_dags_folder)
    out = Path(args.out)
    report = compare(plan, args.dag, rates, duration, warmup, args.repeat, drain, out, _log)
    _print_rows(compare_rows(report), args)
    _log(f"wrote {out / 'results.md'}, {out / 'latency.png'} and {out / 'results.json'}")


@_one_line_errors
def bench_chain(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.compare import chain
    from airflow_kestra_provider.bench.table import chain_rows
    from airflow_kestra_provider.cli.standalone_command import example_dags_folder

    if args.length < 1 or args.runs < 1:
        raise BenchUsageError(f"--length and --runs must be >= 1, got {args.length} and {args.runs}")
    plan = _plan(args, example_dags_folder)
    out = Path(args.out) if args.out else None
    report = chain(plan, args.length, args.runs, 1, _positive("--run-timeout", args.run_timeout), out, _log)
    _print_rows(chain_rows(report["results"]), args)


MAX_DEFERRED = 100_000


@_one_line_errors
def bench_defer(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.defer import defer
    from airflow_kestra_provider.bench.plot import require_matplotlib
    from airflow_kestra_provider.bench.table import defer_rows
    from airflow_kestra_provider.cli.standalone_command import example_dags_folder

    if args.defer < 1 or args.runs < 1:
        raise BenchUsageError(f"--defer and --runs must be >= 1, got {args.defer} and {args.runs}")
    counts = (
        parse_numbers("--deferred", args.deferred, int, 1, MAX_DEFERRED, "number of tasks, e.g. 100,1000")
        if args.deferred
        else []
    )
    plan = _plan(args, example_dags_folder)
    out = Path(args.out) if args.out else None
    if out is not None and counts:
        require_matplotlib()  # for defer.png, before the stacks run
    report = defer(
        plan,
        args.defer,
        args.runs,
        counts,
        _positive("--run-timeout", args.run_timeout),
        out,
        _log,
        _positive("--lead-per-task", args.lead_per_task, allow_zero=True),
    )
    _print_rows(defer_rows(report["results"]), args)


@_one_line_errors
def bench_scale(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.scale import scale, scale_rows
    from airflow_kestra_provider.bench.scale_dags import SCHEDULES as SCALE_SCHEDULES
    from airflow_kestra_provider.cli.standalone_command import example_dags_folder

    counts = parse_dag_counts(args.dags)
    schedule = getattr(args, "schedule", "daily")
    if schedule not in SCALE_SCHEDULES:
        raise BenchUsageError(f"--schedule must be one of {', '.join(SCALE_SCHEDULES)}, got {schedule!r}")
    timeout = _positive("--timeout", args.timeout)
    duration = _positive("--duration", getattr(args, "duration", 60.0))
    plan = _plan(args, example_dags_folder)
    alone = [name for name in plan.stacks if name not in ("stock", "executor", "kestra")]
    if alone:
        raise BenchUsageError(
            f"bench scale runs the scheduler alone: --stacks takes stock, executor and kestra, got {alone[0]!r}"
        )
    out = Path(args.out) if args.out else None
    report = scale(plan, counts, timeout, out, _log, schedule=schedule, duration=duration)
    _print_rows(scale_rows(report["results"]), args)


@_one_line_errors
def bench_ceiling(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.ceiling import ceiling, ceiling_rows
    from airflow_kestra_provider.bench.plot import require_matplotlib
    from airflow_kestra_provider.cli.standalone_command import example_dags_folder

    require_matplotlib()

    rates = parse_rates(args.rates, default=CEILING_DEFAULT_RATES)
    duration = _positive("--duration", args.duration)
    warmup = _positive("--warmup", args.warmup, allow_zero=True)
    cpu_rate = _positive("--cpu-rate", args.cpu_rate)
    drain = _positive("--drain-timeout", args.drain_timeout)
    cpu_repeats = args.cpu_repeats
    if cpu_repeats < 1:
        raise BenchUsageError(f"--cpu-repeats must be >= 1, got {cpu_repeats}")
    plan = _plan(args, example_dags_folder)
    out = Path(args.out)
    report = ceiling(
        plan, args.dag, rates, duration, warmup, cpu_rate, drain, out, _log, cpu_repeats=cpu_repeats
    )
    _print_rows(ceiling_rows(report), args)
    _log(f"wrote {out / 'ceiling.md'}, {out / 'ceiling.png'} and {out / 'ceiling.json'}")


@_one_line_errors
def bench_recovery(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.compare import StackPlan
    from airflow_kestra_provider.bench.recovery import recovery, recovery_rows, scenarios
    from airflow_kestra_provider.cli.standalone_command import example_dags_folder

    kills = [x.strip() for x in str(args.kill).split(",") if x.strip()]
    chosen = scenarios(kills, _stacks(args.stacks))
    if args.runs < 1:
        raise BenchUsageError(f"--runs must be >= 1, got {args.runs}")
    sleep = _positive("--sleep", args.sleep)
    timeout = _positive("--timeout", args.timeout)
    plan = StackPlan(
        dags_source=example_dags_folder(),
        work_dir=Path(args.work_dir) if args.work_dir else None,
        postgres_url=args.postgres_url,
    )
    out = Path(args.out) if args.out else None
    report = recovery(plan, chosen, args.runs, sleep, timeout, out, _log)
    _print_rows(recovery_rows(report["results"]), args)


MAX_SCALE_DAGS = 1_000_000


def parse_numbers(option: str, raw: Any, kind: type, low: float, high: float, example: str) -> list[Any]:
    """Comma-separated numbers of ``kind`` (int: whole numbers, ``_`` allowed) in [low, high]."""
    items = [x.strip() for x in str(raw if raw is not None else "").split(",") if x.strip()]
    if not items:
        raise BenchUsageError(f"{option} needs at least one {example}")
    values = []
    for item in items:
        try:
            value = kind(item.replace("_", ""))
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise BenchUsageError(f"{option}: {item!r} is not {what}") from None
        if not low <= value <= high:
            shown = [f"{v:g}" if kind is float else str(v) for v in (low, high, value)]
            raise BenchUsageError(f"{option} must be between {shown[0]} and {shown[1]}, got {shown[2]}")
        values.append(value)
    return values


def parse_dag_counts(raw: str | int | None) -> list[int]:
    """Sizes from ``--dags 2000`` or ``--dags 2000,10000,100000``; each an integer in [1, 1000000]."""
    return parse_numbers(
        "--dags", raw, int, 1, MAX_SCALE_DAGS, "number of DAGs, e.g. --dags 2000 or --dags 2000,10000"
    )


@_one_line_errors
def bench_claims(args: argparse.Namespace) -> None:
    from airflow_kestra_provider.bench.claims import ClaimPlan, bench_claims, claims_rows, write_claims

    plan = ClaimPlan(
        poll_sizes=parse_numbers("--poll-sizes", args.poll_sizes, int, 1, 10_000, "poll size, e.g. 1,10,100"),
        pollers=parse_numbers("--pollers", args.pollers, int, 1, 64, "number of pollers, e.g. 1,4,16"),
        delays_ms=parse_numbers("--delays", args.delays, float, 0, 1000, "delay in ms, e.g. 0,1,5"),
        rows=parse_numbers("--rows", args.rows, int, 1, 10_000_000, "number of rows")[0],
        duration=_positive("--duration", args.duration),
        work_dir=Path(args.work_dir) if args.work_dir else None,
        postgres_url=args.postgres_url,
    )
    report = bench_claims(plan, _log)
    _print_rows(claims_rows(report), args)
    if args.out:
        write_claims(report, Path(args.out))
        _log(f"wrote {Path(args.out) / 'claims.md'} and {Path(args.out) / 'claims.json'}")


def _plan(args: argparse.Namespace, default_dags: Callable[[], Path]) -> Any:
    from airflow_kestra_provider.bench.compare import StackPlan

    dags_folder = getattr(args, "dags_folder", None)
    dags = Path(dags_folder).resolve() if dags_folder else default_dags()
    if not dags.is_dir():
        raise BenchUsageError(f"--dags-folder {dags} is not a directory")
    api_workers = getattr(args, "api_workers", 1)
    if api_workers < 1:
        raise BenchUsageError(f"--api-workers must be >= 1, got {api_workers}")
    return StackPlan(
        dags_source=dags,
        stacks=_stacks(args.stacks),
        work_dir=Path(args.work_dir) if args.work_dir else None,
        postgres_url=args.postgres_url,
        api_workers=api_workers,
    )
