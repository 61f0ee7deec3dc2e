"""``airflow kestra triggerer``: ``airflow triggerer`` with :class:`KestraTriggererJobRunner`.

Same options, checks and start-up as the stock command (queues, team, daemon option, log
server, ``run_job``); only the job runner differs.
"""

from __future__ import annotations

from argparse import Namespace

from airflow.utils import cli as cli_utils
from airflow.utils.providers_configuration_loader import providers_configuration_loaded

from airflow_kestra_provider import settings
from airflow_kestra_provider.version_compat import check_airflow_version


def _run_kestra_triggerer_job(
    skip_serve_logs: bool, capacity: int | None, queues: set[str] | None, team_name: str | None
) -> None:
    from airflow.cli.commands.triggerer_command import _serve_logs
    from airflow.configuration import conf
    from airflow.jobs.job import Job, run_job
    from airflow.utils.process_utils import set_component_mp_start_method

    from airflow_kestra_provider.triggerer.job_runner import KestraTriggererJobRunner

    set_component_mp_start_method("triggerer")
    heartrate = conf.getfloat("triggerer", "JOB_HEARTBEAT_SEC")
    with _serve_logs(skip_serve_logs):
        job_runner = KestraTriggererJobRunner(
            job=Job(heartrate=heartrate), capacity=capacity, queues=queues, team_name=team_name
        )
        run_job(job=job_runner.job, execute_callable=job_runner._execute)


def _team_name(args: Namespace) -> str | None:
    """The --team-name option, checked as the stock command checks it."""
    from airflow.configuration import conf

    team_name: str | None = getattr(args, "team_name", None)
    if not team_name:
        return None
    if not conf.getboolean("core", "multi_team"):
        raise SystemExit("--team-name option may only be used when core.multi_team is enabled.")
    from airflow.models.team import Team

    if Team.get_name_if_exists(team_name) is None:
        raise SystemExit(f"Team {team_name!r} does not exist.")
    return team_name


@cli_utils.action_cli
@providers_configuration_loaded
def triggerer(args: Namespace) -> None:
    """Start the Kestra triggerer."""
    from airflow.cli.commands.daemon_utils import run_command_with_daemon_option
    from airflow.configuration import conf
    from airflow.sdk._shared.secrets_masker import SecretsMasker

    try:
        settings.validate_all()
        check_airflow_version("airflow kestra triggerer")
    except settings.KestraConfigError as err:
        raise SystemExit(str(err)) from None
    SecretsMasker.enable_log_masking()
    cli_utils.print_banner()
    if args.queues and not conf.getboolean("triggerer", "queues_enabled", fallback=False):
        raise SystemExit("--queues option may only be used when triggerer.queues_enabled is `True`.")
    team_name = _team_name(args)
    queues = set(args.queues) if args.queues else None

    def run() -> None:
        _run_kestra_triggerer_job(args.skip_serve_logs, args.capacity, queues, team_name)

    if cli_utils.should_enable_hot_reload(args):
        from airflow.cli.hot_reload import run_with_reloader

        run_with_reloader(run, process_name="kestra-triggerer")
        return
    run_command_with_daemon_option(
        args=args, process_name="kestra-triggerer", callback=run, should_setup_logging=True
    )
