"""``airflow kestra ...`` command definitions; handlers are imported only when a command runs."""

from __future__ import annotations

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

ARG_STANDALONE_PORT = Arg(
    ("--port",),
    type=int,
    help="Port of the api-server (default: [kestra] standalone_port)",
)
ARG_STANDALONE_DAGS_FOLDER = Arg(
    ("--dags-folder",),
    help="DAGs folder (default: the example DAGs shipped with the provider)",
)
ARG_WORKER_CONCURRENCY = Arg(
    ("--concurrency",),
    type=int,
    help="Task processes this worker runs at once (default: [kestra] worker_concurrency)",
)
ARG_REMOVE_TRIGGERS = Arg(
    ("--remove",),
    action="store_true",
    help="Drop the triggers instead of installing them",
)


def _stock_scheduler_args() -> tuple[Arg, ...]:
    """The options of ``airflow scheduler``, so ``airflow kestra scheduler`` takes the same ones."""
    from airflow.cli.cli_config import core_commands

    for command in core_commands:
        if command.name == "scheduler" and isinstance(command, ActionCommand):
            return tuple(command.args)
    raise RuntimeError("airflow scheduler command not found")


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
        args=(ARG_WORKER_CONCURRENCY,),
    ),
    ActionCommand(
        name="scheduler",
        help="Start a scheduler that never sleeps after work, caches DAGs by version, creates "
        "dag runs in batches and wakes on PostgreSQL NOTIFY (same options as airflow scheduler)",
        func=lazy_load_command("airflow_kestra_provider.cli.scheduler_command.scheduler"),
        args=_stock_scheduler_args(),
    ),
    ActionCommand(
        name="notify-triggers",
        help="Install (or --remove) the PostgreSQL triggers that wake idle Kestra schedulers",
        func=lazy_load_command("airflow_kestra_provider.cli.scheduler_command.notify_triggers"),
        args=(ARG_REMOVE_TRIGGERS,),
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
