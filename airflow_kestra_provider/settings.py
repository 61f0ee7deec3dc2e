"""The ``[kestra]`` configuration section: declared once here, read through accessors.

Every option is declared in :data:`OPTIONS`; ``get_provider_info`` publishes the same
table to Airflow (so ``airflow config list --section kestra`` shows it), and the
accessors below read and validate values on demand. Nothing is read at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTION = "kestra"
VERSION_ADDED = "0.1.0"


class KestraConfigError(ValueError):
    """A ``[kestra]`` option holds a value outside its accepted range."""


@dataclass(frozen=True)
class Option:
    """One ``[kestra]`` option: its type, default, accepted range and documentation."""

    name: str
    type: str  # "integer", "float", "boolean" or "string"
    default: str
    description: str
    example: str
    minimum: float | None = None
    maximum: float | None = None

    def accepted(self) -> str:
        if self.type == "boolean":
            return "True or False"
        if self.type == "string":
            return "a string"
        low = "" if self.minimum is None else f">= {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        kind = "an integer" if self.type == "integer" else "a number"
        bounds = " and ".join(b for b in (low, high) if b)
        return f"{kind} {bounds}".strip()

    def parse(self, raw: str) -> Any:
        """Convert ``raw`` to this option's type, or raise :class:`KestraConfigError`."""
        text = raw.strip()
        try:
            if self.type == "integer":
                value: Any = int(text)
            elif self.type == "float":
                value = float(text)
            elif self.type == "boolean":
                lowered = text.lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
                raise ValueError(text)
            else:
                return text
        except ValueError:
            raise KestraConfigError(self._message(raw)) from None
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise KestraConfigError(self._message(raw))
        return value

    def _message(self, raw: str) -> str:
        return (
            f"[{SECTION}] {self.name} = {raw!r} is invalid: expected {self.accepted()} "
            f"(default {self.default}); set it in airflow.cfg or "
            f"AIRFLOW__{SECTION.upper()}__{self.name.upper()}"
        )


OPTIONS: tuple[Option, ...] = (
    Option(
        "embedded_worker",
        "boolean",
        "True",
        "Run a KestraExecutor worker inside the scheduler process. Set to False when all task "
        "instances are run by ``airflow kestra worker`` processes on other machines.",
        "False",
    ),
    Option(
        "poll_size",
        "integer",
        "100",
        "Most queued task instances one worker claims with its single query per poll.",
        "200",
        1,
        10000,
    ),
    Option(
        "thread_count",
        "integer",
        "0",
        "Threads that process a claimed batch (build workloads, hand them to task processes, "
        "report results). 0 means max(4, number of CPUs).",
        "8",
        0,
        1024,
    ),
    Option(
        "worker_concurrency",
        "integer",
        "0",
        "Task processes one worker runs at once (its pre-forked runner pool). 0 means "
        "``[core] parallelism``.",
        "16",
        0,
        4096,
    ),
    Option(
        "queues",
        "string",
        "",
        "Comma-separated task queues a worker serves; ``*`` serves every queue. Empty: ``airflow "
        "kestra worker`` serves ``[operators] default_queue`` (as a Celery worker does) and the "
        "embedded worker every queue (as LocalExecutor runs every task). ``airflow kestra worker "
        "--queues`` overrides it.",
        "default,high_memory",
    ),
    Option(
        "min_poll_interval",
        "float",
        "0.025",
        "Seconds an idle poller (a worker, the scheduler) sleeps right after the queue went empty "
        "when it is not listening for NOTIFY (Kestra's minimum).",
        "0.05",
        0.001,
        60,
    ),
    Option(
        "max_poll_interval",
        "float",
        "0.5",
        "Seconds an idle poller sleeps once idle longer than ``poll_switch_interval``, after every "
        "empty poll while LISTEN is in effect (notifications wake it sooner), and after a database "
        "error.",
        "1.0",
        0.001,
        600,
    ),
    Option(
        "poll_switch_interval",
        "float",
        "60",
        "Seconds of idleness after which the poller sleeps ``max_poll_interval``; the back-off "
        "steps halve it ``switch_steps`` times.",
        "120",
        0.001,
        86400,
    ),
    Option(
        "switch_steps",
        "integer",
        "5",
        "Number of step-wise back-off levels between the minimum and maximum poll interval.",
        "3",
        0,
        32,
    ),
    Option(
        "listen_notify",
        "boolean",
        "True",
        "On PostgreSQL, LISTEN so that a NOTIFY wakes this idle component at once (a worker, the "
        "scheduler, the triggerer). New and released work is NOTIFYed whatever this says, so "
        "components may differ (workers behind a transaction-mode pool with False).",
        "False",
    ),
    Option(
        "worker_heartbeat_interval",
        "float",
        "5",
        "Seconds between a worker's heartbeats in the ``kestra_worker`` table.",
        "10",
        0.1,
        3600,
    ),
    Option(
        "worker_timeout",
        "float",
        "30",
        "Seconds without a heartbeat after which a worker is presumed dead and its claimed task "
        "instances are failed (or retried) so nothing stays claimed by a dead worker.",
        "60",
        1,
        86400,
    ),
    Option(
        "execution_api_retry_window",
        "float",
        "120",
        "Seconds for which a worker's task runners keep retrying a failed Execution API call "
        "(connection error or HTTP 5xx, e.g. while the metadata database is down) before the "
        "task gives up, so a task that starts or finishes during a database outage records its "
        "real state once the database is back. Between attempts they back off as Airflow does "
        "(random exponential from ``[workers] execution_api_retry_wait_min``) but wait at most "
        "10 s (or ``[workers] execution_api_retry_wait_max`` if lower), and they make at least "
        "``[workers] execution_api_retries`` attempts. 0 keeps Airflow's own retries only.",
        "300",
        0,
        86400,
    ),
    Option(
        "scheduler_loop_budget",
        "float",
        "1.0",
        "Seconds the Kestra scheduler may spend in one loop on each of its three dag run steps: "
        "creating due runs, starting queued runs and examining running runs. Each step still "
        "does at least one batch, and examining always takes the runs a finished task is waiting on first.",
        "2.0",
        0.01,
        600,
    ),
    Option(
        "scheduler_recheck_interval",
        "float",
        "1.0",
        "Seconds after which the Kestra scheduler examines a running dag run again, and runs its "
        "critical section (queueing scheduled task instances), when nothing it watches changed: "
        "no task instance of the run ended, no task instance scheduled in the loop, no NOTIFY "
        "of a task instance's state. Runs due again are examined 20 per loop, oldest decision "
        "first, as stock. Time-based changes (retry delays, dag run timeouts, sensor "
        "reschedules) are acted on within this interval (with many running runs, in their turn), "
        "as within the stock scheduler's idle "
        "sleep; executor callbacks and connection tests are dispatched at this cadence too, and "
        "with LISTEN it is the cadence at which due DAGs are looked for when nothing notified "
        "(a DAG whose next run became due gets it within this interval). 0 examines the stock "
        "batch of running runs and runs the critical section and those checks in every loop, as "
        "the stock scheduler does.",
        "0.5",
        0,
        60,
    ),
    Option(
        "scheduler_dagrun_batch_size",
        "integer",
        "200",
        "Due DAGs the Kestra scheduler locks with one query and creates dag runs for, and queued "
        "dag runs it locks with one query and starts, before it takes the next batch (within "
        "``scheduler_loop_budget``).",
        "500",
        1,
        100000,
    ),
    Option(
        "scheduler_bulk_create",
        "boolean",
        "True",
        "Create the scheduled runs of a batch of plain due DAGs with one INSERT for the runs and "
        "one for their task instances; other DAGs always take Airflow's own one-by-one path.",
        "False",
    ),
    Option(
        "dag_cache_size",
        "integer",
        "10000",
        "Deserialized DAGs the Kestra scheduler keeps, keyed by dag id and version.",
        "100000",
        1,
        10_000_000,
    ),
    Option(
        "scheduler_gc_threshold",
        "integer",
        "50000",
        "Allocations between two collections of the youngest generation of Python's garbage "
        "collector in the Kestra scheduler process (Python's own default is 700). Creating "
        "thousands of runs allocates millions of short-lived objects next to up to "
        "``dag_cache_size`` cached DAGs; with 700, 10,000 due DAGs took 37-43 s instead of "
        "26 s until all their runs existed. 0 leaves Python's thresholds as they are.",
        "50000",
        0,
        10_000_000,
    ),
    Option(
        "triggerer_reconcile_interval",
        "float",
        "10",
        "Seconds between two loads of ``airflow kestra triggerer`` when nothing woke it: on "
        "PostgreSQL with ``listen_notify`` a NOTIFY wakes it for every new trigger and every "
        "task instance leaving ``deferred``, so this load only takes over the triggers of a "
        "triggerer that stopped heartbeating (after ``[triggerer] "
        "triggerer_health_check_threshold``) and catches what a lost notification missed. "
        "Without NOTIFY the triggerer loads on the workers' back-off instead "
        "(``min_poll_interval`` to ``max_poll_interval``).",
        "30",
        0.1,
        3600,
    ),
    Option(
        "standalone_port",
        "integer",
        "8080",
        "Port of the api-server that ``airflow kestra standalone`` starts.",
        "8081",
        1,
        65535,
    ),
    Option(
        "embedded_postgres_dir",
        "string",
        "",
        "Data folder of the embedded PostgreSQL that ``airflow kestra standalone`` starts when "
        "``[database] sql_alchemy_conn`` does not point at a server. Empty means "
        "``$AIRFLOW_HOME/kestra-postgres``.",
        "/var/lib/airflow/pg",
    ),
    Option(
        "allow_untested_airflow",
        "boolean",
        "False",
        "Start the Kestra scheduler, the KestraExecutor and ``airflow kestra worker`` on an Airflow "
        "version outside the range this provider is tested with (the ``apache-airflow`` requirement "
        "of the package), logging a warning, instead of stopping with an error. They override and "
        "patch Airflow internals that another release may have changed: see "
        "docs/airflow-compatibility.md.",
        "True",
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def get(name: str) -> Any:
    """Read and validate one ``[kestra]`` option from Airflow's configuration."""
    from airflow.configuration import conf

    option = OPTIONS_BY_NAME[name]
    raw = conf.get(SECTION, name, fallback=option.default)
    return option.parse(str(raw))


def validate_all() -> None:
    """Validate every ``[kestra]`` option; raise on the first bad one. Call at component start."""
    for option in OPTIONS:
        get(option.name)


def embedded_worker() -> bool:
    return bool(get("embedded_worker"))


def poll_size() -> int:
    return int(get("poll_size"))


def thread_count() -> int:
    configured = int(get("thread_count"))
    return configured if configured > 0 else max(4, os.cpu_count() or 1)


def worker_concurrency() -> int:
    configured = int(get("worker_concurrency"))
    if configured > 0:
        return configured
    from airflow.configuration import conf

    return conf.getint("core", "parallelism")


ALL_QUEUES = "*"


def parse_queues(raw: str) -> frozenset[str]:
    """Queue names of a comma-separated list (``*`` among them: just ``{"*"}``, every queue)."""
    names = frozenset(q.strip() for q in raw.split(",") if q.strip())
    return frozenset({ALL_QUEUES}) if ALL_QUEUES in names else names


def queues() -> frozenset[str]:
    """``[kestra] queues`` as given: empty when unset (see :func:`worker_queues`)."""
    return parse_queues(str(get("queues")))


def worker_queues(embedded: bool, given: str | None = None) -> frozenset[str]:
    """The queues a worker serves; an empty set means every queue. ``given``: the worker's
    ``--queues``, else ``[kestra] queues``, else ``[operators] default_queue`` for ``airflow
    kestra worker`` and every queue for the embedded worker."""
    names = parse_queues(given) if given is not None else queues()
    if given is not None and not names:
        raise KestraConfigError("argument --queues: give queue names, or * for every queue")
    if not names:
        if embedded:
            return frozenset()
        from airflow.configuration import conf

        return frozenset({conf.get("operators", "default_queue")})
    return frozenset() if names == {ALL_QUEUES} else names


def min_poll_interval() -> float:
    return float(get("min_poll_interval"))


def max_poll_interval() -> float:
    return float(get("max_poll_interval"))


def poll_switch_interval() -> float:
    return float(get("poll_switch_interval"))


def switch_steps() -> int:
    return int(get("switch_steps"))


def listen_notify() -> bool:
    return bool(get("listen_notify"))


def worker_heartbeat_interval() -> float:
    return float(get("worker_heartbeat_interval"))


def worker_timeout() -> float:
    return float(get("worker_timeout"))


def scheduler_health_check_threshold() -> float:
    """Airflow's ``[scheduler] scheduler_health_check_threshold``: a scheduler job silent for
    longer is gone (stock adoption's test, which the executor's own take-over shares)."""
    from airflow.configuration import conf

    return conf.getfloat("scheduler", "scheduler_health_check_threshold")


def execution_api_retry_window() -> float:
    return float(get("execution_api_retry_window"))


def scheduler_recheck_interval() -> float:
    return float(get("scheduler_recheck_interval"))


def scheduler_loop_budget() -> float:
    return float(get("scheduler_loop_budget"))


def scheduler_dagrun_batch_size() -> int:
    return int(get("scheduler_dagrun_batch_size"))


def scheduler_bulk_create() -> bool:
    return bool(get("scheduler_bulk_create"))


def dag_cache_size() -> int:
    return int(get("dag_cache_size"))


def scheduler_gc_threshold() -> int:
    return int(get("scheduler_gc_threshold"))


def triggerer_reconcile_interval() -> float:
    return float(get("triggerer_reconcile_interval"))


def standalone_port() -> int:
    return int(get("standalone_port"))


def allow_untested_airflow() -> bool:
    return bool(get("allow_untested_airflow"))


def embedded_postgres_dir() -> Path:
    configured = str(get("embedded_postgres_dir"))
    if configured:
        return Path(configured).expanduser()
    from airflow.configuration import AIRFLOW_HOME

    return Path(AIRFLOW_HOME) / "kestra-postgres"


def options_markdown_table() -> str:
    """The ``[kestra]`` options as the markdown table in docs/configuration.md.

    Regenerate the docs with ``python -m airflow_kestra_provider.settings``.
    """
    rows = ["| option | type | default | accepted values | description |", "|---|---|---|---|---|"]
    for option in OPTIONS:
        default = option.default if option.default != "" else "(empty)"
        description = option.description.replace("|", "/").replace("``", "`")
        rows.append(
            f"| `{option.name}` | {option.type} | `{default}` | {option.accepted()} | {description} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(options_markdown_table(), end="")
