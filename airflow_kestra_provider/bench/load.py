"""One load step: trigger runs at a fixed rate for a while, wait for them, compute the figures."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_kestra_provider.bench.collect import RunCollector, RunRecord
from airflow_kestra_provider.bench.progress import ProgressBar
from airflow_kestra_provider.bench.rate import OpenLoopSender
from airflow_kestra_provider.bench.stats import Summary, summarize

POLL_INTERVAL = 1.0


@dataclass
class LoadSpec:
    dag_id: str
    rate: float
    duration: float
    warmup: float = 0.0
    drain_timeout: float = 120.0

    @property
    def warmup_count(self) -> int:
        return round(self.warmup * self.rate)

    @property
    def measured_count(self) -> int:
        return max(1, round(self.duration * self.rate))


@dataclass
class RateResult:
    """The figures of one rate step (seconds, runs, runs per second)."""

    dag_id: str
    rate: float
    duration: float
    warmup: float
    sent: int
    send_errors: int
    achieved_rate: float | None
    max_send_lag: float | None
    completed: int
    succeeded: int
    failed: int
    latency: Summary | None
    to_first_task: Summary | None
    throughput: float | None
    drained: bool
    first_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def incomplete(self) -> int:
        return self.sent - self.completed

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "rate": self.rate,
            "duration": self.duration,
            "warmup": self.warmup,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "achieved_rate": self.achieved_rate,
            "max_send_lag": self.max_send_lag,
            "completed": self.completed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "incomplete": self.incomplete,
            "latency": None if self.latency is None else self.latency.to_dict(),
            "to_first_task": None if self.to_first_task is None else self.to_first_task.to_dict(),
            "throughput": self.throughput,
            "drained": self.drained,
            "first_error": self.first_error,
            **self.extra,
        }


def new_prefix(rate: float) -> str:
    """Run-id prefix of one step: unique, so steps and repeated benches never mix."""
    return f"kbench-{secrets.token_hex(4)}-r{rate:g}-"


def run_load(
    spec: LoadSpec,
    trigger: Callable[[str], None],
    collector_factory: Callable[[str], RunCollector],
    progress: ProgressBar | None = None,
    poll_interval: float = POLL_INTERVAL,
    cpu_probe: Callable[[], dict[str, float]] | None = None,
) -> RateResult:
    """Send ``warmup + duration`` seconds of runs at ``spec.rate``; wait (bounded) for the measured ones.

    ``trigger(run_id)`` creates one dag run; the collector reads all runs of the step at once.
    With ``cpu_probe`` (component -> CPU seconds), the step's CPU time per component divided by
    every finished run of the step (warm-up included) is added to the result as ``cpu``.
    """
    prefix = new_prefix(spec.rate)
    collector = collector_factory(prefix)
    total = spec.warmup_count + spec.measured_count
    run_ids = [f"{prefix}{i:07d}" for i in range(total)]
    sender = OpenLoopSender(spec.rate, total, lambda i: trigger(run_ids[i]))
    sending = threading.Thread(target=sender.run, name="bench-sender", daemon=True)
    bar = progress or ProgressBar(f"{spec.rate:g} runs/s", quiet=True)
    cpu_before = cpu_probe() if cpu_probe is not None else None
    started = time.monotonic()
    sending.start()
    runs: dict[str, RunRecord] = {}
    drain_deadline: float | None = None
    try:
        while True:
            time.sleep(poll_interval)
            runs = collector.poll()
            finished = sum(1 for r in runs.values() if r.finished)
            if sending.is_alive():
                sent = sender.sent_ok()
                bar.update(sent, total, f"sent, {finished} finished")
                continue
            if drain_deadline is None:
                drain_deadline = time.monotonic() + spec.drain_timeout
            accepted = max(sender.sent_ok(), len(runs))
            left = math.ceil(drain_deadline - time.monotonic())
            bar.update(finished, accepted, f"finished (waiting up to {max(0, left)}s)")
            if finished >= accepted or time.monotonic() >= drain_deadline:
                break
    except BaseException:
        sender.stop()
        sending.join()
        raise
    sending.join()
    result = compute_result(spec, sender, runs, run_ids)
    if cpu_probe is not None and cpu_before is not None:
        from airflow_kestra_provider.bench.cpu import cpu_per_run

        finished_all = sum(1 for r in runs.values() if r.finished)
        result.extra["cpu"] = cpu_per_run(cpu_before, cpu_probe(), finished_all, time.monotonic() - started)
    notes = [] if result.drained else ["wait timed out"]
    if result.max_send_lag is not None and result.max_send_lag > max(0.5, 2 / spec.rate):
        notes.append(f"sends fell behind schedule by up to {result.max_send_lag:.1f} s: the API was slow")
    bar.close(
        f"done: {result.completed}/{result.sent} measured runs finished"
        + (f" ({'; '.join(notes)})" if notes else "")
    )
    return result


def compute_result(
    spec: LoadSpec, sender: OpenLoopSender, runs: dict[str, RunRecord], run_ids: list[str]
) -> RateResult:
    ok_indexes = {r.index for r in sender.records if r.ok}
    # A run counts as sent when the API accepted it, or when it exists although the reply failed
    # (e.g. the client timed out after the server created the run).
    measured_ids = [
        run_ids[i] for i in range(spec.warmup_count, len(run_ids)) if i in ok_indexes or run_ids[i] in runs
    ]
    measured = [runs[r] for r in measured_ids if r in runs]
    finished = [r for r in measured if r.finished]
    latencies = [r.latency for r in finished if r.latency is not None]
    to_first = [r.to_first_task for r in measured if r.to_first_task is not None]
    errors = sender.errors()
    return RateResult(
        dag_id=spec.dag_id,
        rate=spec.rate,
        duration=spec.duration,
        warmup=spec.warmup,
        sent=len(measured_ids),
        send_errors=len([r for r in sender.records[spec.warmup_count :] if r.error]),
        achieved_rate=sender.achieved_rate(),
        max_send_lag=sender.max_lag(),
        completed=len(finished),
        succeeded=sum(1 for r in finished if r.state == "success"),
        failed=sum(1 for r in finished if r.state == "failed"),
        latency=summarize(latencies),
        to_first_task=summarize(to_first),
        throughput=steady_throughput(measured),
        drained=len(finished) == len(measured_ids),
        first_error=errors[0] if errors else None,
    )


def steady_throughput(measured: list[RunRecord]) -> float | None:
    """Measured runs finished per second between the first and the last of them finishing.

    While the stack keeps up this equals the send rate; once it falls behind it is the rate at
    which the stack really completes runs (its service rate). Database clock.
    """
    ends = sorted(r.end_date for r in measured if r.finished and r.end_date is not None)
    if len(ends) < 2:
        return None
    window = (ends[-1] - ends[0]).total_seconds()
    return (len(ends) - 1) / window if window > 0 else None
