"""Compute a batch's next run infos once per distinct (schedule, restriction, last run).

After the bulk path has created a batch of runs, each DAG's next-run fields are moved on by the
stock ``DagModel.calculate_dagrun_date_fields``, which asks ``dag.next_dagrun_info`` for the run
after the one just created. For a cron timetable that parses the expression and walks it several
times (five ``croniter`` objects per DAG): about 2 ms of the bulk path's 6 to 7 ms per DAG. Yet 2,000
``@daily`` DAGs due at once all ask the same question: same timetable, same start and end dates,
same catch-up setting, same last run.

:class:`NextRunMemo` answers each distinct question once per batch. It hands
``calculate_dagrun_date_fields`` a view of the DAG whose ``next_dagrun_info`` looks the answer up
by ``(timetable class, serialized timetable, time restriction, last run info)``. Only Airflow's own
timetable classes are memoized: their answer depends on nothing else, except, for catch-up off,
on the current time, which is why a memo lives for one batch only (a second or so): a DAG late in
the batch gets the answer computed for the first one, as if it had been processed a moment
earlier. Custom timetables, and a question whose computation failed, are always asked again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Hashable

    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.timetables.base import DagRunInfo

# Timetables defined by Airflow itself: deterministic given their serialized form.
_BUILT_IN_PREFIX = "airflow.timetables."


def timetable_key(dag: SerializedDAG) -> Hashable | None:
    """The identity of ``dag``'s timetable for the memo, or None when it must not be memoized."""
    timetable = dag.timetable
    cls = type(timetable)
    if not cls.__module__.startswith(_BUILT_IN_PREFIX):
        return None
    try:
        serialized = json.dumps(timetable.serialize(), sort_keys=True, default=str)
    except Exception:
        return None
    return (cls.__module__, cls.__qualname__, serialized)


class NextRunMemo:
    """``next_dagrun_info`` answers shared by the DAGs of one batch."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, DagRunInfo] = {}
        self.hits = 0
        self.misses = 0

    def view(self, dag: SerializedDAG) -> SerializedDAG:
        """``dag`` itself, or a view of it whose ``next_dagrun_info`` uses this memo."""
        key = timetable_key(dag)
        if key is None:
            return dag
        view: Any = _MemoizedDag(dag, key, self)
        return view  # duck-typed: calculate_dagrun_date_fields uses .timetable and .next_dagrun_info

    def next_dagrun_info(
        self, dag: SerializedDAG, key: Hashable, last_automated_run_info: DagRunInfo | None, restricted: bool
    ) -> DagRunInfo | None:
        question = (key, dag._time_restriction if restricted else None, last_automated_run_info)
        answer = self._answers.get(question)
        if answer is not None:
            self.hits += 1
            return answer
        self.misses += 1
        answer = dag.next_dagrun_info(last_automated_run_info=last_automated_run_info, restricted=restricted)
        if answer is not None:  # None is also what a failure returns: ask again next time
            self._answers[question] = answer
        return answer


class _MemoizedDag:
    """A SerializedDAG whose ``next_dagrun_info`` is answered by a :class:`NextRunMemo`."""

    def __init__(self, dag: SerializedDAG, key: Hashable, memo: NextRunMemo) -> None:
        self._dag = dag
        self._key = key
        self._memo = memo

    def next_dagrun_info(
        self, *, last_automated_run_info: DagRunInfo | None, restricted: bool = True
    ) -> DagRunInfo | None:
        return self._memo.next_dagrun_info(self._dag, self._key, last_automated_run_info, restricted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dag, name)
