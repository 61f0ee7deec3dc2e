"""``KestraTriggererJobRunner``: the stock triggerer job with :class:`~.supervisor.KestraTriggerRunnerSupervisor`.

Same job type (``TriggererJob``: the health endpoint, ``airflow jobs check`` and the stock
triggerers' high-availability checks see it as a triggerer), same capacity, queues and teams,
same signal handling; ``_execute`` does what the stock one does with our supervisor class.
"""

from __future__ import annotations

import logging
import os

from airflow.jobs.triggerer_job_runner import TriggererJobRunner

from airflow_kestra_provider.metrics import initialize_stats
from airflow_kestra_provider.triggerer.supervisor import KestraTriggerRunnerSupervisor

log = logging.getLogger(__name__)


class KestraTriggererJobRunner(TriggererJobRunner):
    """Airflow's triggerer job, run by the NOTIFY-driven supervisor."""

    def _execute(self) -> int | None:
        # As stock: the main process serves connections to the subprocess as a server
        # component; the subprocess (trigger code) marks itself as a client.
        previous_context = os.environ.get("_AIRFLOW_PROCESS_CONTEXT")
        os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"
        self.log.info("Starting the Kestra triggerer")
        self.register_signals()
        initialize_stats()
        self.trigger_runner = None
        try:
            self.trigger_runner = KestraTriggerRunnerSupervisor.start(
                job=self.job,
                capacity=self.capacity,
                logger=log,
                queues=self.queues,
                team_name=self.team_name,
            )
            self.trigger_runner.run()
            return self.trigger_runner._exit_code
        except Exception:
            self.log.exception("Exception when executing KestraTriggerRunnerSupervisor.run")
            raise
        finally:
            self.log.info("Waiting for triggers to clean up")
            if self.trigger_runner is not None:
                self.trigger_runner.kill(escalation_delay=10, force=True)
            self.log.info("Exited trigger loop")
            if previous_context is None:
                os.environ.pop("_AIRFLOW_PROCESS_CONTEXT", None)
            else:
                os.environ["_AIRFLOW_PROCESS_CONTEXT"] = previous_context
