"""Remember cron descriptions by expression in the scheduler process.

Every time a DAG with a cron schedule is deserialized, Airflow's ``CronMixin.__init__`` computes
the schedule's human-readable description (``cron_descriptor``, for the UI) from the cron
expression alone. With thousands of DAGs deserialized once each, that text is most of the
deserialization time, and most DAGs share a handful of expressions (``@daily``, ``0 * * * *``).
:func:`install` wraps ``CronMixin._describe_with_dom_dow_fix`` in an LRU keyed by the expression,
so each distinct expression is described once per scheduler process. The result is the same
string (the method depends on nothing but the expression).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_MEMO_SIZE = 4096


def install() -> None:
    """Idempotent: wrap the method once per process."""
    from airflow.timetables._cron import CronMixin

    original = CronMixin._describe_with_dom_dow_fix
    if getattr(original, "kestra_memo", None) is not None:
        return

    @lru_cache(maxsize=_MEMO_SIZE)
    def describe(expression: str) -> str:
        return original(None, expression)  # type: ignore[arg-type]  # self is not used

    def memoized(self: Any, expression: str) -> str:
        return describe(expression)

    memoized.kestra_memo = describe  # type: ignore[attr-defined]
    memoized.__wrapped__ = original  # type: ignore[attr-defined]  # the stock method, for airflow_seams
    CronMixin._describe_with_dom_dow_fix = memoized  # type: ignore[method-assign]
