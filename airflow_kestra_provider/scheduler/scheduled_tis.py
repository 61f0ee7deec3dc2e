"""Whether any task instance waits in ``scheduled``: the critical section's only input.

The stock critical section builds its query (pools, concurrency limits, priorities: a few
milliseconds of Python on 2 cores) and takes the pool-row lock before it finds out that nothing is
scheduled, which is the usual answer in a loop woken by a task that ended. One lookup on the
``ti_state`` index answers that first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.models.taskinstance import TaskInstance
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_ANY_SCHEDULED = select(TaskInstance.id).where(TaskInstance.state == TaskInstanceState.SCHEDULED).limit(1)


def any_scheduled(session: Session) -> bool:
    """Whether a task instance is in state ``scheduled`` (one index lookup)."""
    return session.scalar(_ANY_SCHEDULED) is not None
