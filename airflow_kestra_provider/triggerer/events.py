"""Hands a batch of fired trigger events on with a few statements instead of a few per task.

What the stock ``Trigger.submit_event`` does for one event: select the task instances deferred on
the trigger and call ``handle_event_submit`` for each (it sets the resumed or ended state, and
flushes), then select the trigger with its asset watchers, register an asset change for each of
its assets and hand the event to its callback, if any. For a batch of events, one after another,
that is a select per event, an ORM flush per task instance, and for a task its trigger ended
(``end_from_trigger``) two lazy loads (its DAG and dag run) on top: 7 to 13 ms a task on 2 cores,
so 10,000 tasks whose triggers fire together end minutes apart.

:func:`submit_events` gives the same rows for a batch with:

* one select of the deferred task instances of every trigger in the batch: the columns the
  handling reads, with their DAG's file and bundle and their dag run's bundle version;
* for a resumed task (any ``TriggerEvent`` the stock base handler takes): that handler itself,
  run on a :class:`DeferredRow` (the row's values as attributes, no session), whose changed
  attributes (next kwargs with the event's payload, or the ``__fail__`` route when they cannot be
  encoded; state, trigger, scheduled time) are then written;
* for a task its trigger ended in success or skipped, without XComs: what the stock
  ``BaseTaskEndEvent`` handler does, reimplemented: no trigger, the state, start date (if none),
  end date and duration as ``TaskInstance.set_state`` sets them, and for success the callback
  request the dag-processor runs (one log line per batch where stock logs one per task);
* one executemany UPDATE per kind (guarded by ``state = 'deferred'``) and one INSERT of the
  callback requests;
* every other case (a failed end, which may be retried; XComs to push; an event type with a
  handler of its own; a DAG without a file) through the stock handler on the task instance
  loaded with the ORM, flushing as stock does;
* one select of the batch's triggers that have asset watchers or a callback, with them loaded
  (a task's trigger has neither, so a batch of task events loads no trigger).

A task instance is handled only by the first event of its trigger in the batch, as stock, whose
second ``submit_event`` no longer finds it deferred. ``tests/unit/triggerer/test_events.py``
compares the rows with those of ``Trigger.submit_event`` for every kind.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, cast

from airflow.models.trigger import Trigger, handle_event_submit
from airflow.sdk import timezone
from airflow.triggers.base import BaseTaskEndEvent, TriggerEvent
from airflow.utils.state import TaskInstanceState
from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

log = logging.getLogger(__name__)

RESUME = "resume"  # the stock base handler, run on a DeferredRow
END = "end"  # the BaseTaskEndEvent handler's success/skipped case, reimplemented
STOCK = "stock"  # the stock handler on the ORM task instance
# what the base handler may set on a task instance (its resume and its __fail__ route)
RESUME_COLUMNS = ("next_method", "next_kwargs", "trigger_id", "state", "scheduled_dttm")
ENDED_STATES = (TaskInstanceState.SUCCESS, TaskInstanceState.SKIPPED)


class DeferredRow:
    """A deferred task instance's row with its values as attributes, for the stock base handler
    (which sets attributes and flushes the session it is given; here nothing needs flushing)."""

    id: Any
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    state: str

    def __init__(self, row: dict[str, Any]) -> None:
        self.__dict__.update(row)

    def __repr__(self) -> str:  # as TaskInstance's, for the handler's log lines
        where = f" map_index={self.map_index}" if self.map_index != -1 else ""
        return f"<TaskInstance: {self.dag_id}.{self.task_id} {self.run_id}{where} [{self.state}] ti_id={self.id}>"


class _NoFlush:
    """The session given to the base handler for a :class:`DeferredRow`."""

    def flush(self, objects: Any = None) -> None:
        """Nothing to flush: the batch writes the row's changes itself."""


def event_kind(event: TriggerEvent) -> str:
    """How a task instance deferred on a trigger that fired ``event`` is handled in a batch."""
    handler = handle_event_submit.dispatch(type(event))
    if handler is handle_event_submit.dispatch(object):
        return RESUME
    if (
        handler is handle_event_submit.dispatch(BaseTaskEndEvent)
        and isinstance(event, BaseTaskEndEvent)
        and event.task_instance_state in ENDED_STATES
        and not event.xcoms
    ):
        return END
    return STOCK


@functools.cache
def _callback_ti_fields() -> tuple[str, ...]:
    """The task instance fields of a callback request (Airflow's ``TaskInstance`` data model),
    read once per process (a row's request and every batch's select use them)."""
    from airflow.callbacks.callback_requests import TaskCallbackRequest

    return tuple(TaskCallbackRequest.model_fields["ti"].annotation.model_fields)  # type: ignore[union-attr]


def deferred_rows(trigger_ids: Iterable[int], session: Session) -> dict[int, list[dict[str, Any]]]:
    """Trigger id -> the rows of the task instances deferred on it, with ``relative_fileloc`` and
    ``bundle_name`` of their DAG and ``bundle_version`` of their dag run."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

    table = TaskInstance.__table__
    names = dict.fromkeys(("id", "dag_id", "task_id", "run_id", "map_index", "start_date", "end_date"))
    names.update(dict.fromkeys(RESUME_COLUMNS))
    names.update(dict.fromkeys(_callback_ti_fields()))
    query = (
        select(
            *(table.c[name] for name in names),
            DagModel.relative_fileloc,
            DagModel.bundle_name,
            DagRun.bundle_version.label("run_bundle_version"),
        )
        .select_from(table)
        .outerjoin(DagModel, DagModel.dag_id == table.c.dag_id)
        .outerjoin(DagRun, and_(DagRun.dag_id == table.c.dag_id, DagRun.run_id == table.c.run_id))
        .where(
            table.c.trigger_id.in_(sorted(set(trigger_ids))),
            table.c.state == TaskInstanceState.DEFERRED,
        )
    )
    waiting: dict[int, list[dict[str, Any]]] = defaultdict(list)
    result = session.execute(query)
    keys = tuple(result.keys())  # once: a RowMapping builds its keys for every dict() of a row
    for values in result:
        row = dict(zip(keys, values, strict=True))
        waiting[row["trigger_id"]].append(row)
    return waiting


class Batch:
    """The changes of one batch, written with a statement per kind."""

    def __init__(self) -> None:
        self.resumed: list[dict[str, Any]] = []
        self.ended: list[dict[str, Any]] = []
        self.callbacks: list[Any] = []
        self.stock: list[tuple[Any, TriggerEvent]] = []  # (task instance id, event)

    def resume(self, row: dict[str, Any], event: TriggerEvent) -> None:
        """Run the stock base handler on the row; keep what it set."""
        stand_in = DeferredRow(row)
        handle_event_submit(event, task_instance=cast(Any, stand_in), session=cast(Any, _NoFlush()))
        self.resumed.append({"b_id": row["id"], **{name: getattr(stand_in, name) for name in RESUME_COLUMNS}})

    def end(self, row: dict[str, Any], event: BaseTaskEndEvent) -> None:
        """What the stock BaseTaskEndEvent handler does for success or skipped without XComs."""
        state = event.task_instance_state
        if state == TaskInstanceState.SUCCESS:
            if row["relative_fileloc"] is None:  # stock raises: leave it to stock
                self.stock.append((row["id"], event))
                return
            self.callbacks.append(_callback_request(row, state))
        now = timezone.utcnow()
        start, end = row["start_date"] or now, row["end_date"] or now
        self.ended.append(
            {
                "b_id": row["id"],
                "trigger_id": None,
                "state": state,
                "start_date": start,
                "end_date": end,
                "duration": (end - start).total_seconds(),
            }
        )

    def write(self, session: Session) -> None:
        from airflow.models.taskinstance import TaskInstance

        table = TaskInstance.__table__
        for changes in (self.resumed, self.ended):
            if not changes:
                continue
            columns = [name for name in changes[0] if name != "b_id"]
            statement = (
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.state == TaskInstanceState.DEFERRED)
                .values({name: bindparam(name) for name in columns})
            )
            session.execute(statement, changes)
        if self.callbacks:
            log.info("Sending %d task callbacks (tasks their triggers ended)", len(self.callbacks))
            insert_callback_requests(self.callbacks, session)
        if self.stock:
            self._write_stock(session)
        session.flush()

    def _write_stock(self, session: Session) -> None:
        """The stock handler on the ORM task instance, flushing as stock does."""
        from airflow.models.taskinstance import TaskInstance

        ids = [ti_id for ti_id, _ in self.stock]
        query = (
            select(TaskInstance)
            .where(TaskInstance.id.in_(ids), TaskInstance.state == TaskInstanceState.DEFERRED)
            .options(joinedload(TaskInstance.dag_model), joinedload(TaskInstance.dag_run))
        )
        loaded = {ti.id: ti for ti in session.scalars(query).unique()}
        for ti_id, event in self.stock:
            if (task_instance := loaded.get(ti_id)) is not None:
                handle_event_submit(event, task_instance=task_instance, session=session)


def _callback_request(row: dict[str, Any], state: TaskInstanceState) -> Any:
    from airflow.callbacks.callback_requests import TaskCallbackRequest

    return TaskCallbackRequest(
        filepath=row["relative_fileloc"],
        ti=cast(Any, {name: row[name] for name in _callback_ti_fields()}),  # validated into its model
        task_callback_type=state,
        bundle_name=row["bundle_name"],
        bundle_version=row["run_bundle_version"],
    )


def insert_callback_requests(requests: Sequence[Any], session: Session) -> None:
    """What ``DatabaseCallbackSink.send`` adds for each request (a ``DbCallbackRequest`` of
    priority 1), written with one executemany INSERT instead of an ORM flush per object."""
    from airflow.models.db_callback_request import DbCallbackRequest

    mapper = sa_inspect(DbCallbackRequest)
    attributes = [(attr.key, attr.columns[0]) for attr in mapper.column_attrs]
    rows = []
    for request in requests:
        stored = DbCallbackRequest(callback=request, priority_weight=1)
        values = stored.__dict__
        # id and created_at come from their columns' defaults, as in a flush
        rows.append({column.name: values[key] for key, column in attributes if key in values})
    session.execute(insert(mapper.local_table), rows)


def triggers_with_assets(trigger_ids: Iterable[int], session: Session) -> dict[int, Trigger]:
    """Trigger id -> trigger, with its asset watchers, their assets and its callback loaded, for
    the triggers of ``trigger_ids`` that have an asset watcher or a callback (a task's trigger has
    neither, and loading it would only show that)."""
    from airflow.models.asset import AssetWatcherModel

    query = (
        select(Trigger)
        .where(
            Trigger.id.in_(sorted(set(trigger_ids))),
            or_(Trigger.asset_watchers.any(), Trigger.callback.has()),
        )
        .options(
            selectinload(Trigger.asset_watchers).selectinload(AssetWatcherModel.asset),
            selectinload(Trigger.callback),
            lazyload(Trigger.task_instance),
        )
    )
    return {trigger.id: trigger for trigger in session.scalars(query)}


def submit_events(events: Sequence[tuple[int, TriggerEvent]], session: Session) -> None:
    """Do what ``Trigger.submit_event`` does for each ``(trigger_id, event)`` on ``session`` (not
    committed here)."""
    from airflow.assets.manager import AssetManager

    trigger_ids = [trigger_id for trigger_id, _ in events]
    waiting = deferred_rows(trigger_ids, session)
    batch = Batch()
    for trigger_id, event in events:
        kind = event_kind(event)
        for row in waiting.pop(trigger_id, ()):
            if kind == RESUME:
                batch.resume(row, event)
            elif kind == END:
                batch.end(row, event)  # type: ignore[arg-type]
            else:
                batch.stock.append((row["id"], event))
    batch.write(session)

    triggers = triggers_with_assets(trigger_ids, session)
    for trigger_id, event in events:
        trigger = triggers.get(trigger_id)
        if trigger is None:  # no assets and no callback, or already deleted (as stock)
            continue
        for asset in trigger.assets:
            AssetManager.register_asset_change(
                asset=asset.to_serialized(),
                extra={"from_trigger": True, "payload": event.payload},
                session=session,
            )
        if trigger.callback:
            trigger.callback.handle_event(event, session)
