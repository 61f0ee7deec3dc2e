"""``airflow kestra ...`` command definitions; handlers are imported only when a command runs."""

from __future__ import annotations

from airflow.cli.cli_config import (
    ARG_DAEMON,
    ARG_LOG_FILE,
    ARG_OUTPUT,
    ARG_PID,
    ARG_SKIP_SERVE_LOGS,
    ARG_STDERR,
    ARG_STDOUT,
    ActionCommand,
    Arg,
    GroupCommand,
    lazy_load_command,
)

# Help texts are rich markup (Airflow's help formatter is rich_argparse): a literal "[section]"
# is written "\\[section]", or rich takes it for a style tag and drops it.
ARG_STANDALONE_PORT = Arg(
    ("--port",),
    type=int,
    help="Port of the api-server (default: \\[kestra] standalone_port)",
)
ARG_STANDALONE_DAGS_FOLDER = Arg(
    ("--dags-folder",),
    help="DAGs folder (default: \\[core] dags_folder when AIRFLOW__CORE__DAGS_FOLDER or airflow.cfg sets it "
    "to other than $AIRFLOW_HOME/dags, else the example DAGs shipped with the provider)",
)
ARG_WORKER_CONCURRENCY = Arg(
    ("-c", "--concurrency"),
    type=int,
    help="Task processes this worker runs at once, at least 1 (default: \\[kestra] worker_concurrency)",
)
ARG_WORKER_QUEUES = Arg(
    ("-q", "--queues"),
    help="Comma-separated queues this worker serves, * for every queue (default: \\[kestra] queues "
    "when set, else \\[operators] default_queue)",
)
ARG_WORKER_NAME = Arg(
    ("--name",),
    help="Name of this worker, unique among live workers (default: the host name from \\[core] "
    "hostname_callable)",
)
ARG_WORKER_NAME_POSITIONAL = Arg(("name",), help="Name of the worker (see airflow kestra workers list)")
ARG_WORKER_HEALTH_NAME = Arg(
    ("name",),
    nargs="?",
    help="Name of the worker (default: this host's name from \\[core] hostname_callable)",
)
ARG_MAINTENANCE_ON = Arg(("--on",), action="store_true", help="Stop claiming; running tasks go on")
ARG_MAINTENANCE_OFF = Arg(("--off",), action="store_true", help="Claim again")
ARG_REMOVE_TRIGGERS = Arg(
    ("--remove",),
    action="store_true",
    help="Drop the triggers instead of installing them",
)


def _stock_args(name: str) -> tuple[Arg, ...]:
    """The options of ``airflow <name>``, so ``airflow kestra <name>`` takes the same ones."""
    from airflow.cli.cli_config import core_commands

    for command in core_commands:
        if command.name == name and isinstance(command, ActionCommand):
            return tuple(command.args)
    raise RuntimeError(f"airflow {name} command not found")


# -- bench ----------------------------------------------------------------------------------------
ARG_BENCH_DAG = Arg(
    ("--dag",), default="kestra_bench_noop", help="DAG to trigger (default: kestra_bench_noop)"
)
# Every bench command that takes rates takes both spellings, repeated or comma-separated; a
# default cannot go in the Arg (append would add to it), so the handlers apply it.
COMPARE_DEFAULT_RATES = "2,3,5,10,25"
CEILING_DEFAULT_RATES = "2,4,6,8,10,12,15,20,25,30,40,50"
_RATES_FLAGS = ("--rates", "--rate")
_RATES_HOW = "repeat --rate/--rates or comma-separate for several rates"
ARG_BENCH_RATE = Arg(
    _RATES_FLAGS,
    action="append",
    dest="rates",
    required=True,
    help=f"Runs triggered per second (open loop); {_RATES_HOW}",
)
ARG_BENCH_RATES = Arg(
    _RATES_FLAGS,
    action="append",
    dest="rates",
    help=f"Runs triggered per second (open loop); {_RATES_HOW} (default: {COMPARE_DEFAULT_RATES})",
)
ARG_BENCH_DURATION = Arg(
    ("--duration",), type=float, default=60.0, help="Measured seconds per rate (default 60)"
)
ARG_BENCH_WARMUP = Arg(
    ("--warmup",),
    type=float,
    default=10.0,
    help="Seconds sent first at each rate and not measured (default 10)",
)
ARG_BENCH_DRAIN = Arg(
    ("--drain-timeout",),
    type=float,
    default=120.0,
    help="Seconds to wait for runs after the last send; unfinished runs count as not completed (default 120)",
)
ARG_BENCH_JSON = Arg(
    ("--json",),
    action="store_true",
    help="Print the full results as JSON (every figure, and CPU by component with --cpu) instead of "
    "the table; -o json prints the table's rows",
)
ARG_BENCH_CPU = Arg(
    ("--cpu",),
    action="store_true",
    help="Also measure CPU-seconds per run of each component (processes with this AIRFLOW_HOME, "
    "and the PostgreSQL server if it runs on this machine)",
)
ARG_BENCH_API_URL = Arg(
    ("--api-url",),
    help="Airflow API base URL (default: $AIRFLOW_KESTRA_BENCH_API_URL, then the api base_url option)",
)
ARG_BENCH_USERNAME = Arg(
    ("--username",), help="API user (default: $AIRFLOW_KESTRA_BENCH_USERNAME, then admin)"
)
ARG_BENCH_PASSWORD = Arg(
    ("--password",),
    help="API password (default: $AIRFLOW_KESTRA_BENCH_PASSWORD, then the SimpleAuthManager password file)",
)
ARG_BENCH_DB_URL = Arg(
    ("--db-url",),
    help="Metadata database URL to read results from (default: $AIRFLOW_KESTRA_BENCH_DB_URL, "
    "then the database sql_alchemy_conn option)",
)
ARG_BENCH_REPEAT = Arg(
    ("--repeat",), type=int, default=1, help="Repeat every stack N times, alternating order"
)
ARG_BENCH_OUT = Arg(("--out",), required=True, help="Folder for results.md, latency.png and results.json")
ARG_BENCH_CHAIN_OUT = Arg(("--out",), help="Folder for chain.md and chain.json (optional)")
ARG_BENCH_STACKS = Arg(
    ("--stacks",),
    default="stock,kestra",
    help="Comma-separated stacks to run, in this order: stock (LocalExecutor, airflow scheduler), "
    "executor (KestraExecutor, airflow scheduler), kestra (airflow kestra standalone), kestra-remote1, "
    "kestra-remote2 and kestra-remote4 (kestra with the embedded worker off and 1, 2 or 4 airflow "
    "kestra worker processes), stock-celery and kestra-celery (CeleryExecutor, one celery worker, "
    "airflow scheduler or airflow kestra scheduler), stock-edge and kestra-edge (EdgeExecutor, one "
    "edge worker); the Celery and Edge stacks need the engines extra; default stock,kestra",
)
ARG_BENCH_WORK_DIR = Arg(
    ("--work-dir",), help="Folder for the throw-away AIRFLOW_HOMEs (default: a temp dir)"
)
ARG_BENCH_POSTGRES_URL = Arg(
    ("--postgres-url",),
    help="PostgreSQL server on which to create throw-away databases (default: an embedded PostgreSQL)",
)
ARG_BENCH_API_WORKERS = Arg(
    ("--api-workers",), type=int, default=1, help="api-server workers per stack (default 1)"
)
ARG_BENCH_DAGS_FOLDER = Arg(
    ("--dags-folder",), help="DAGs copied into each stack (default: the example DAGs)"
)
ARG_BENCH_LENGTH = Arg(("--length",), type=int, default=10, help="Links in the chain DAG (default 10)")
ARG_BENCH_RUNS = Arg(
    ("--runs",), type=int, default=20, help="Chain runs per stack, one after another (default 20)"
)
ARG_BENCH_RUN_TIMEOUT = Arg(("--run-timeout",), type=float, default=300.0, help="Seconds to wait for one run")
ARG_BENCH_SCALE_DAGS = Arg(
    ("--dags",),
    required=True,
    help="Number of synthetic DAGs, or a comma-separated list of sizes run one after another (2000,10000)",
)
ARG_BENCH_SCALE_TIMEOUT = Arg(
    ("--timeout",),
    type=float,
    default=3600.0,
    help="Seconds of scheduling per stack and size before it is stopped and the runs so far are reported "
    "(default 3600)",
)
ARG_BENCH_SCALE_SCHEDULE = Arg(
    ("--schedule",),
    default="daily",
    help="daily: @daily DAGs, all due (default); assets: DAGs on `shared & own` asset with only `shared` "
    "queued, to time scheduler loops with pending conditions",
)
ARG_BENCH_SCALE_DURATION = Arg(
    ("--duration",),
    type=float,
    default=60.0,
    help="With --schedule assets: seconds the scheduler runs per stack (default 60)",
)
ARG_BENCH_SCALE_OUT = Arg(("--out",), help="Folder for scale.md and scale.json (optional)")
ARG_BENCH_CEILING_RATES = Arg(
    _RATES_FLAGS,
    action="append",
    dest="rates",
    help=f"Rates of the ladder, tried in increasing order until one is not kept up with; {_RATES_HOW} "
    f"(default: {CEILING_DEFAULT_RATES})",
)
ARG_BENCH_CEILING_DURATION = Arg(
    ("--duration",), type=float, default=30.0, help="Measured seconds per rate (default 30)"
)
ARG_BENCH_CEILING_CPU_RATE = Arg(
    ("--cpu-rate",),
    type=float,
    default=5.0,
    help="Rate of the step whose CPU per run is reported, before the ladder (default 5)",
)
ARG_BENCH_CEILING_CPU_REPEATS = Arg(
    ("--cpu-repeats",),
    type=int,
    default=1,
    help="Times the CPU step is taken per stack, each time on a fresh stack, the order of the stacks "
    "reversed each time (A B, B A, ...); the CPU per run reported is the median (default 1)",
)
ARG_BENCH_CEILING_DRAIN = Arg(
    ("--drain-timeout",),
    type=float,
    default=60.0,
    help="Seconds to wait for runs after the last send of a step (default 60)",
)
ARG_BENCH_CEILING_OUT = Arg(
    ("--out",), required=True, help="Folder for ceiling.md, ceiling.png and ceiling.json"
)
ARG_BENCH_RECOVERY_KILL = Arg(
    ("--kill",),
    default="worker,scheduler",
    help="Crashes to time, comma-separated: worker (SIGKILL of one of two airflow kestra worker "
    "processes) and scheduler (SIGKILL of the scheduler with its embedded worker, restarted at once); "
    "default worker,scheduler",
)
ARG_BENCH_RECOVERY_STACKS = Arg(
    ("--stacks",),
    default="kestra",
    help="Stacks for --kill scheduler: stock and/or kestra (default kestra; stock waits for Airflow's "
    "heartbeat timeouts, about 5 minutes)",
)
ARG_BENCH_RECOVERY_RUNS = Arg(
    ("--runs",), type=int, default=12, help="Runs of the sleeping DAG triggered before the kill (default 12)"
)
ARG_BENCH_RECOVERY_SLEEP = Arg(
    ("--sleep",), type=float, default=20.0, help="Seconds each task sleeps (default 20)"
)
ARG_BENCH_RECOVERY_TIMEOUT = Arg(
    ("--timeout",),
    type=float,
    default=600.0,
    help="Seconds after the kill to wait for recovery before reporting what did not recover (default 600)",
)
ARG_BENCH_RECOVERY_OUT = Arg(("--out",), help="Folder for recovery.md and recovery.json (optional)")
ARG_BENCH_CLAIMS_POLL_SIZES = Arg(
    ("--poll-sizes",),
    default="1,10,100",
    help="Task instances one poll may claim, comma-separated (default 1,10,100)",
)
ARG_BENCH_CLAIMS_POLLERS = Arg(
    ("--pollers",), default="1,4,16", help="Processes polling at once, comma-separated (default 1,4,16)"
)
ARG_BENCH_CLAIMS_DELAYS = Arg(
    ("--delays",),
    default="0,1,5",
    help="Round trips added between pollers and PostgreSQL, ms, comma-separated (default 0,1,5)",
)
ARG_BENCH_CLAIMS_ROWS = Arg(
    ("--rows",), default="20000", help="Queued task instances, pending again for each case (default 20000)"
)
ARG_BENCH_CLAIMS_DURATION = Arg(
    ("--duration",), type=float, default=5.0, help="Seconds of polling per case at most (default 5)"
)
ARG_BENCH_CLAIMS_OUT = Arg(("--out",), help="Folder for claims.md and claims.json (optional)")
ARG_BENCH_DEFER_SECONDS = Arg(
    ("--defer",),
    type=int,
    default=5,
    help="Seconds the deferrable sensor of the overhead runs waits (default 5)",
)
ARG_BENCH_DEFER_RUNS = Arg(
    ("--runs",), type=int, default=10, help="Overhead runs per stack, one after another (default 10)"
)
ARG_BENCH_DEFERRED = Arg(
    ("--deferred",),
    default="",
    help="Comma-separated numbers of tasks deferred at once to measure the triggerer with, e.g. "
    "100,1000,10000 (default: none)",
)
ARG_BENCH_DEFER_LEAD = Arg(
    ("--lead-per-task",),
    type=float,
    default=0.025,
    help="Seconds per deferred task added to the time between deferring them and their firing, "
    "for the triggerer to own and start them all before the quiet window (default 0.025; the "
    "stock triggerer needs about 0.05 for 10000 on 2 cores)",
)
ARG_BENCH_DEFER_OUT = Arg(("--out",), help="Folder for defer.md and defer.json (optional)")
_BENCH_STACK_ARGS = (
    ARG_BENCH_STACKS,
    ARG_BENCH_WORK_DIR,
    ARG_BENCH_POSTGRES_URL,
    ARG_BENCH_API_WORKERS,
    ARG_BENCH_DAGS_FOLDER,
)

BENCH_COMMANDS = (
    ActionCommand(
        name="run",
        help="Trigger runs at fixed open-loop rates on the configured deployment; print latency percentiles",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_run"),
        args=(
            ARG_BENCH_DAG,
            ARG_BENCH_RATE,
            ARG_BENCH_DURATION,
            ARG_BENCH_WARMUP,
            ARG_BENCH_DRAIN,
            ARG_BENCH_JSON,
            ARG_OUTPUT,
            ARG_BENCH_CPU,
            ARG_BENCH_API_URL,
            ARG_BENCH_USERNAME,
            ARG_BENCH_PASSWORD,
            ARG_BENCH_DB_URL,
        ),
    ),
    ActionCommand(
        name="compare",
        help="Run the same load on throw-away stacks (--stacks stock,executor,kestra); write a table and a plot",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_compare"),
        args=(
            ARG_BENCH_DAG,
            ARG_BENCH_RATES,
            ARG_BENCH_DURATION,
            ARG_BENCH_WARMUP,
            ARG_BENCH_DRAIN,
            ARG_BENCH_REPEAT,
            ARG_BENCH_OUT,
            ARG_OUTPUT,
            *_BENCH_STACK_ARGS,
        ),
    ),
    ActionCommand(
        name="chain",
        help="Per-link latency of a chain of no-op tasks on throw-away stacks (--stacks), side by side",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_chain"),
        args=(
            ARG_BENCH_LENGTH,
            ARG_BENCH_RUNS,
            ARG_BENCH_RUN_TIMEOUT,
            ARG_BENCH_CHAIN_OUT,
            ARG_OUTPUT,
            *_BENCH_STACK_ARGS,
        ),
    ),
    ActionCommand(
        name="defer",
        help="Overhead of a deferral (run duration minus the wait), and the triggerer with many tasks "
        "deferred at once, on throw-away stacks (--stacks), side by side",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_defer"),
        args=(
            ARG_BENCH_DEFER_SECONDS,
            ARG_BENCH_DEFER_RUNS,
            ARG_BENCH_DEFERRED,
            ARG_BENCH_DEFER_LEAD,
            ARG_BENCH_RUN_TIMEOUT,
            ARG_BENCH_DEFER_OUT,
            ARG_OUTPUT,
            *_BENCH_STACK_ARGS,
        ),
    ),
    ActionCommand(
        name="ceiling",
        help="Highest rate each throw-away stack keeps up with (every run done, p50 under 1 s), and "
        "its CPU per run by component at a fixed rate; side by side",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_ceiling"),
        args=(
            ARG_BENCH_DAG,
            ARG_BENCH_CEILING_RATES,
            ARG_BENCH_CEILING_DURATION,
            ARG_BENCH_WARMUP,
            ARG_BENCH_CEILING_CPU_RATE,
            ARG_BENCH_CEILING_CPU_REPEATS,
            ARG_BENCH_CEILING_DRAIN,
            ARG_BENCH_CEILING_OUT,
            ARG_OUTPUT,
            *_BENCH_STACK_ARGS,
        ),
    ),
    ActionCommand(
        name="recovery",
        help="Seconds from a SIGKILL of a worker or of the scheduler to every affected task instance "
        "running elsewhere or finished, on throw-away stacks with default settings",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_recovery"),
        args=(
            ARG_BENCH_RECOVERY_KILL,
            ARG_BENCH_RECOVERY_STACKS,
            ARG_BENCH_RECOVERY_RUNS,
            ARG_BENCH_RECOVERY_SLEEP,
            ARG_BENCH_RECOVERY_TIMEOUT,
            ARG_BENCH_RECOVERY_OUT,
            ARG_OUTPUT,
            ARG_BENCH_WORK_DIR,
            ARG_BENCH_POSTGRES_URL,
        ),
    ),
    ActionCommand(
        name="claims",
        help="Task instances per second the workers' poll statement claims alone, by poll size, pollers "
        "at once and round-trip delay to PostgreSQL",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_claims"),
        args=(
            ARG_BENCH_CLAIMS_POLL_SIZES,
            ARG_BENCH_CLAIMS_POLLERS,
            ARG_BENCH_CLAIMS_DELAYS,
            ARG_BENCH_CLAIMS_ROWS,
            ARG_BENCH_CLAIMS_DURATION,
            ARG_BENCH_CLAIMS_OUT,
            ARG_OUTPUT,
            ARG_BENCH_WORK_DIR,
            ARG_BENCH_POSTGRES_URL,
        ),
    ),
    ActionCommand(
        name="scale",
        help="N synthetic DAGs: time until every due run exists and is done, or per-loop time with pending "
        "asset conditions; stock and kestra",
        func=lazy_load_command("airflow_kestra_provider.cli.bench_command.bench_scale"),
        args=(
            ARG_BENCH_SCALE_DAGS,
            ARG_BENCH_SCALE_SCHEDULE,
            ARG_BENCH_SCALE_TIMEOUT,
            ARG_BENCH_SCALE_DURATION,
            ARG_BENCH_SCALE_OUT,
            ARG_OUTPUT,
            ARG_BENCH_STACKS,
            ARG_BENCH_WORK_DIR,
            ARG_BENCH_POSTGRES_URL,
        ),
    ),
)

_WORKERS = "airflow_kestra_provider.cli.workers_command."
WORKERS_COMMANDS = (
    ActionCommand(
        name="list",
        help="Workers (name, host, queues, concurrency, running, free, state, last heartbeat, version), "
        "and queues with waiting task instances that no live worker serves",
        func=lazy_load_command(_WORKERS + "workers_list"),
        args=(ARG_OUTPUT,),
    ),
    ActionCommand(
        name="maintenance",
        help="Stop (--on) or resume (--off) a worker's claims; its running tasks go on",
        func=lazy_load_command(_WORKERS + "workers_maintenance"),
        args=(ARG_WORKER_NAME_POSITIONAL, ARG_MAINTENANCE_ON, ARG_MAINTENANCE_OFF),
    ),
    ActionCommand(
        name="drain",
        help="Make a worker stop claiming, finish its running tasks and exit",
        func=lazy_load_command(_WORKERS + "workers_drain"),
        args=(ARG_WORKER_NAME_POSITIONAL,),
    ),
    ActionCommand(
        name="health",
        help="Exit 0 when the worker is registered, live and heartbeating within \\[kestra] "
        "worker_timeout, else 1 (for probes)",
        func=lazy_load_command(_WORKERS + "workers_health"),
        args=(ARG_WORKER_HEALTH_NAME,),
    ),
)

KESTRA_COMMANDS = (
    ActionCommand(
        name="standalone",
        help="Run a whole Airflow stack on this machine, with an embedded PostgreSQL if none is configured",
        func=lazy_load_command("airflow_kestra_provider.cli.standalone_command.standalone"),
        args=(ARG_STANDALONE_PORT, ARG_STANDALONE_DAGS_FOLDER),
    ),
    ActionCommand(
        name="worker",
        help="Run a KestraExecutor worker: claim queued task instances from the metadata database and run them",
        func=lazy_load_command("airflow_kestra_provider.cli.worker_command.worker"),
        args=(
            ARG_WORKER_QUEUES,
            ARG_WORKER_CONCURRENCY,
            ARG_WORKER_NAME,
            ARG_PID,
            ARG_DAEMON,
            ARG_LOG_FILE,
            ARG_STDOUT,
            ARG_STDERR,
            ARG_SKIP_SERVE_LOGS,
        ),
    ),
    GroupCommand(
        name="workers",
        help="List the KestraExecutor's workers, put one in maintenance, drain one, check one's health",
        subcommands=WORKERS_COMMANDS,
    ),
    ActionCommand(
        name="scheduler",
        help="Start a scheduler that never sleeps after work, caches DAGs by version, creates "
        "dag runs in batches and wakes on PostgreSQL NOTIFY (same options as airflow scheduler)",
        func=lazy_load_command("airflow_kestra_provider.cli.scheduler_command.scheduler"),
        args=_stock_args("scheduler"),
    ),
    ActionCommand(
        name="triggerer",
        help="Start a triggerer that loads new triggers and hands fired events on at once, woken "
        "by PostgreSQL NOTIFY instead of a 1 s loop (same options as airflow triggerer)",
        func=lazy_load_command("airflow_kestra_provider.cli.triggerer_command.triggerer"),
        args=_stock_args("triggerer"),
    ),
    ActionCommand(
        name="notify-triggers",
        help="Install (or --remove) the PostgreSQL triggers that wake idle Kestra schedulers and triggerers",
        func=lazy_load_command("airflow_kestra_provider.cli.scheduler_command.notify_triggers"),
        args=(ARG_REMOVE_TRIGGERS,),
    ),
    GroupCommand(
        name="bench",
        help="Latency at fixed rates (Kestra's benchmark) for this deployment, or stock against the Kestra stack",
        subcommands=BENCH_COMMANDS,
    ),
)


def get_kestra_cli_commands() -> list[GroupCommand]:
    return [
        GroupCommand(
            name="kestra",
            help="Kestra-class executor, scheduler, benchmark and standalone stack",
            subcommands=KESTRA_COMMANDS,
        )
    ]
