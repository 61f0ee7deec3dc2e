"""Read the bench's dag runs from the metadata database: ONE query per poll, whatever the count.

The bench names its runs ``<prefix><index>``; a poll reads every run with that prefix together
with the start of its first task instance, so no query is issued per run or per task.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

TERMINAL_STATES = frozenset({"success", "failed"})

_RUNS_QUERY = text(
    """
    SELECT dr.run_id, dr.state, dr.queued_at, dr.start_date, dr.end_date,
           MIN(ti.start_date) AS first_task_start
    FROM dag_run dr
    LEFT JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id
    WHERE dr.dag_id = :dag_id AND dr.run_id LIKE :pattern ESCAPE '\\'
    GROUP BY dr.run_id, dr.state, dr.queued_at, dr.start_date, dr.end_date
    """
)


class DatabaseUnreachable(RuntimeError):
    """The metadata database did not answer."""


@dataclass(frozen=True)
class RunRecord:
    """What the database says about one bench run (times are the database's, UTC)."""

    run_id: str
    state: str
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    first_task_start: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES and self.end_date is not None

    @property
    def latency(self) -> float | None:
        """Run end minus run queued (seconds): what the user waits for."""
        if not self.finished or self.queued_at is None or self.end_date is None:
            return None
        return (self.end_date - self.queued_at).total_seconds()

    @property
    def to_first_task(self) -> float | None:
        """Run queued to first task start (seconds): scheduling plus executor pick-up."""
        if self.queued_at is None or self.first_task_start is None:
            return None
        return (self.first_task_start - self.queued_at).total_seconds()

    @property
    def duration(self) -> float | None:
        """Run end minus run start (seconds)."""
        if not self.finished or self.start_date is None or self.end_date is None:
            return None
        return (self.end_date - self.start_date).total_seconds()


class RunCollector:
    """Polls the runs of one dag whose run id starts with ``prefix``."""

    def __init__(self, engine: Engine, dag_id: str, prefix: str) -> None:
        # '_' and '%' are LIKE wildcards: escape them so the pattern matches the prefix literally.
        prefix_escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        self.engine = engine
        self.dag_id = dag_id
        self.prefix = prefix
        self._pattern = prefix_escaped + "%"

    def poll(self) -> dict[str, RunRecord]:
        """Every run of this bench so far, keyed by run id: one query."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(_RUNS_QUERY, {"dag_id": self.dag_id, "pattern": self._pattern}).all()
        except Exception as err:
            raise DatabaseUnreachable(f"metadata database query failed: {err}") from err
        return {row.run_id: RunRecord(*row) for row in rows}


def make_engine(url: str) -> Engine:
    """A small engine for the bench's own reads (one connection is enough)."""
    return create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True)


def check_database(engine: Engine) -> None:
    """Raise :class:`DatabaseUnreachable` unless the database answers and holds Airflow's tables."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1 FROM dag_run WHERE 1 = 0")).all()
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatabaseUnreachable(
            f"cannot read the metadata database {engine.url.render_as_string(hide_password=True)}: {first_line}"
        ) from err
