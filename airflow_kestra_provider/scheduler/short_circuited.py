"""Which examined dag runs just had EmptyOperator task instances set straight to ``success``.

At the end of a run's examination, ``DagRun.schedule_tis`` sets the task instances of trivial
EmptyOperators (no callbacks, inlets or outlets) to ``success`` without an executor, with an
UPDATE the ORM ``Session`` does not see. The stock scheduler notices them at the run's next
examination, a loop later: a run whose last task is such an operator (a one-task EmptyOperator
DAG, the common ``end`` marker) is examined once more only to be marked finished, and every
EmptyOperator hop of a chain costs a loop.

:func:`watching` makes each run of a batch note the task instances it hands to ``schedule_tis``
when at least one of them is short-circuited; :func:`take` returns that list once, so the runner
can expire those objects (the UPDATE changed their rows) and examine the run again at once, in the
same transaction. On exit every run is back to the stock method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from airflow_kestra_provider.scheduler.run_methods import replaced

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

_ATTRIBUTE = "schedule_tis"  # the DagRun method the stock decision ends with
_NOTED = "_kestra_short_circuited"  # where a run keeps what it handed over


def _watcher(run: DagRun) -> Callable[..., int]:
    stock = run.schedule_tis  # the bound stock method

    def schedule_tis(schedulable_tis: Iterable[TaskInstance], **kwargs: Any) -> int:
        handed = list(schedulable_tis)
        if any(not ti.is_schedulable for ti in handed):
            run.__dict__[_NOTED] = handed
        return stock(handed, **kwargs)

    return schedule_tis


def take(run: DagRun) -> list[TaskInstance]:
    """The task instances ``run`` last handed to ``schedule_tis``, if some were EmptyOperators set
    to ``success`` on the spot; else (or when already taken) an empty list."""
    return run.__dict__.pop(_NOTED, [])


def watching(runs: Iterable[DagRun]) -> AbstractContextManager[None]:
    """Within the block, the runs note what :func:`take` returns; on exit they are as before."""
    return replaced(runs, _ATTRIBUTE, _watcher, also_clear=(_NOTED,))
