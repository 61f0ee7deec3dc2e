"""``airflow kestra scheduler``: ``airflow scheduler`` with :class:`KestraSchedulerJobRunner`.

Same options and the same start-up as the stock command (daemon option, log and health-check
servers, ``run_job``); only the job runner differs.
"""

from __future__ import annotations

from argparse import Namespace

from airflow.utils import cli as cli_utils
from airflow.utils.providers_configuration_loader import providers_configuration_loaded

from airflow_kestra_provider import settings
from airflow_kestra_provider.version_compat import check_airflow_version


def _run_kestra_scheduler_job(args: Namespace) -> None:
    from airflow.cli.commands.scheduler_command import _serve_health_check, _serve_logs
    from airflow.configuration import conf
    from airflow.jobs.job import Job, run_job
    from airflow.utils.process_utils import set_component_mp_start_method

    from airflow_kestra_provider.scheduler.runner import KestraSchedulerJobRunner

    set_component_mp_start_method("scheduler")
    job_runner = KestraSchedulerJobRunner(job=Job(), num_runs=args.num_runs, only_idle=args.only_idle)
    enable_health_check = conf.getboolean("scheduler", "ENABLE_HEALTH_CHECK")
    with _serve_logs(args.skip_serve_logs), _serve_health_check(enable_health_check):
        run_job(job=job_runner.job, execute_callable=job_runner._execute)


@cli_utils.action_cli
@providers_configuration_loaded
def scheduler(args: Namespace) -> None:
    """Start the Kestra scheduler."""
    from airflow.cli.commands.daemon_utils import run_command_with_daemon_option

    try:
        settings.validate_all()
        check_airflow_version("airflow kestra scheduler")
    except settings.KestraConfigError as err:
        raise SystemExit(str(err)) from None
    cli_utils.print_banner()
    if args.only_idle and args.num_runs <= 0:
        raise SystemExit("The --only-idle flag requires --num-runs to be set to a positive number.")
    if cli_utils.should_enable_hot_reload(args):
        from airflow.cli.hot_reload import run_with_reloader

        run_with_reloader(lambda: _run_kestra_scheduler_job(args), process_name="kestra-scheduler")
        return
    run_command_with_daemon_option(
        args=args,
        process_name="kestra-scheduler",
        callback=lambda: _run_kestra_scheduler_job(args),
        should_setup_logging=True,
    )


@cli_utils.action_cli
@providers_configuration_loaded
def notify_triggers(args: Namespace) -> None:
    """Install (default) or remove the LISTEN/NOTIFY wake-up triggers on PostgreSQL."""
    from airflow import settings as airflow_settings

    from airflow_kestra_provider.scheduler import notify

    engine = airflow_settings.engine
    if engine is None or not notify.is_postgres(engine):
        raise SystemExit("LISTEN/NOTIFY wake-up needs PostgreSQL as the metadata database")
    if args.remove:
        notify.remove_triggers(engine)
        print("LISTEN/NOTIFY wake-up triggers removed")
    else:
        if not notify.install_triggers(engine):
            raise SystemExit(
                "could not install the triggers (lock not granted in time, or not allowed); see the log"
            )
        print("LISTEN/NOTIFY wake-up triggers installed")
