"""A batch of fired events handed on by ``submit_events`` leaves the rows ``Trigger.submit_event``
leaves, event by event (real schema on SQLite).

Two identical DAGs get the same deferred task instances, each on a trigger of its own; one DAG's
events go through the stock method one at a time, the other's through one batch; the task
instance rows, callback requests, XComs and asset events must be the same.
"""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from tests.unit.metadata import register_dag

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
# Columns that differ between two task instances handled at different instants or in other DAGs.
TI_SKIP = {
    "id",
    "dag_id",
    "context_carrier",
    "updated_at",
    "scheduled_dttm",
    "start_date",
    "end_date",
    "duration",
    "dag_version_id",
}
TI_STAMPS = ("scheduled_dttm", "start_date", "end_date", "duration")
# Columns of a callback request row that must match (besides id and created_at, which must be set).
CALLBACK_COLUMNS = ("type", "fetch_method", "bundle_name", "state", "output", "priority_weight", "trigger_id")


def _events():
    """(name, event) of each kind the batch handles, its own way and the stock way. (An event
    with XComs is left out: ``xcom_push`` writes through a session of its own, which SQLite's one
    writer at a time does not allow beside the batch's; the batch hands it to the stock handler
    with the plain session, see ``test_how_each_kind_of_event_is_handled``.)"""
    from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

    return [
        ("resume", TriggerEvent({"moment": "2025-01-01T00:00:00+00:00", "n": 1})),
        ("resume_none", TriggerEvent(None)),
        ("unencodable", TriggerEvent(object())),  # a payload serde cannot encode: the __fail__ route
        ("success", TaskSuccessEvent()),
        ("skipped", TaskSkippedEvent()),
        ("failed", TaskFailedEvent()),
    ]


def _dag(dag_id: str):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        EmptyOperator(task_id="wait")
    return dag


def _deferred(session, dag_id: str, names: list[str]) -> dict[str, int]:
    """One run per name whose task instance is deferred on a trigger of its own: name -> trigger id."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.trigger import Trigger
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    register_dag(session, _dag(dag_id), relative_fileloc=f"{dag_id}.py")
    dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
    triggers = {}
    for name in names:
        run = dag.create_dagrun(
            run_id=name,
            run_after=START,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        trigger = Trigger(classpath="airflow.triggers.testing.SuccessTrigger", kwargs={})
        session.add(trigger)
        session.flush()
        ti = run.get_task_instance("wait", session=session)
        ti.state = TaskInstanceState.DEFERRED
        ti.start_date = START
        ti.trigger_id = trigger.id
        ti.next_method = "execute_complete"
        ti.next_kwargs = {"kept": "yes"}
        triggers[name] = trigger.id
    session.commit()
    return triggers


def _rows(session, dag_id: str):
    """Task instances (run id -> columns), callback requests and XComs of ``dag_id``."""
    from airflow.models.db_callback_request import DbCallbackRequest
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    session.expire_all()
    tis = {}
    for row in session.execute(
        select(TaskInstance.__table__).where(TaskInstance.dag_id == dag_id)
    ).mappings():
        columns = {k: v for k, v in row.items() if k not in TI_SKIP}
        columns.update({f"{stamp} set": row[stamp] is not None for stamp in TI_STAMPS})
        tis[row["run_id"]] = columns
    callbacks = []
    for stored in session.scalars(select(DbCallbackRequest)):
        request = stored.get_callback_request()
        if request.ti.dag_id != dag_id:
            continue
        # the row's own columns too (one INSERT must fill them as the ORM object's flush does)
        columns = {key: getattr(stored, key) for key in CALLBACK_COLUMNS}
        columns["stamped"] = stored.id is not None and stored.created_at is not None
        columns["data keys"] = sorted(stored.data)
        callbacks.append(
            (request.ti.run_id, str(request.task_callback_type), request.filepath == f"{dag_id}.py", columns)
        )
    callbacks.sort(key=lambda callback: callback[:3])
    xcoms = sorted(
        (x.run_id, x.key, str(x.value))
        for x in session.scalars(select(XComModel).where(XComModel.dag_id == dag_id))
    )
    return tis, callbacks, xcoms


def test_a_batch_leaves_the_rows_the_stock_method_leaves(session):
    from airflow.models.trigger import Trigger

    from airflow_kestra_provider.triggerer.events import submit_events

    events = _events()
    names = [name for name, _ in events]
    stock_ids = _deferred(session, "events_stock", names)
    ours_ids = _deferred(session, "events_ours", names)

    for name, event in events:
        Trigger.submit_event(trigger_id=stock_ids[name], event=event, session=session)
    session.commit()
    submit_events([(ours_ids[name], event) for name, event in events], session)
    session.commit()

    stock, ours = _rows(session, "events_stock"), _rows(session, "events_ours")
    assert ours == stock
    tis, callbacks, xcoms = ours
    assert tis["resume"]["state"] == "scheduled" and tis["resume"]["trigger_id"] is None
    assert tis["unencodable"]["next_method"] == "__fail__"
    assert tis["success"]["state"] == "success" and tis["skipped"]["state"] == "skipped"
    assert tis["failed"]["state"] == "failed"
    assert [callback[0] for callback in callbacks] == ["failed", "success"]
    assert xcoms == []


def test_how_each_kind_of_event_is_handled():
    from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

    from airflow_kestra_provider.triggerer.events import END, RESUME, STOCK, event_kind

    class OwnEvent(TriggerEvent):
        pass

    assert event_kind(TriggerEvent(1)) == event_kind(OwnEvent(1)) == RESUME
    assert event_kind(TaskSuccessEvent()) == event_kind(TaskSkippedEvent()) == END
    assert event_kind(TaskFailedEvent()) == STOCK  # may be retried: history rows, a new id
    assert event_kind(TaskSuccessEvent(xcoms={"answer": 42})) == STOCK


def test_a_second_event_of_one_trigger_finds_its_task_already_handled(session):
    from airflow.models.trigger import Trigger
    from airflow.triggers.base import TriggerEvent

    from airflow_kestra_provider.triggerer.events import submit_events

    stock_ids = _deferred(session, "twice_stock", ["twice"])
    ours_ids = _deferred(session, "twice_ours", ["twice"])
    first, second = TriggerEvent("first"), TriggerEvent("second")
    for event in (first, second):
        Trigger.submit_event(trigger_id=stock_ids["twice"], event=event, session=session)
    submit_events([(ours_ids["twice"], first), (ours_ids["twice"], second)], session)
    session.commit()
    assert _rows(session, "twice_ours") == _rows(session, "twice_stock")
    assert "first" in str(_rows(session, "twice_ours")[0]["twice"]["next_kwargs"])


def test_an_asset_watcher_event_registers_the_same_asset_events(session):
    from airflow.models.asset import AssetEvent, AssetModel, AssetWatcherModel
    from airflow.models.trigger import Trigger
    from airflow.triggers.base import TriggerEvent

    from airflow_kestra_provider.triggerer.events import submit_events

    ids = {}
    for side in ("stock", "ours"):
        asset = AssetModel(name=f"watched_{side}", uri=f"file:///watched_{side}")
        trigger = Trigger(classpath="airflow.triggers.testing.SuccessTrigger", kwargs={})
        session.add_all([asset, trigger])
        session.flush()
        session.add(AssetWatcherModel(name=f"watcher_{side}", asset_id=asset.id, trigger_id=trigger.id))
        ids[side] = (asset.id, trigger.id)
    session.commit()
    Trigger.submit_event(trigger_id=ids["stock"][1], event=TriggerEvent({"file": "a"}), session=session)
    submit_events([(ids["ours"][1], TriggerEvent({"file": "a"}))], session)
    session.commit()

    def extras(asset_id: int) -> list:
        return [e.extra for e in session.scalars(select(AssetEvent).where(AssetEvent.asset_id == asset_id))]

    assert (
        extras(ids["ours"][0])
        == extras(ids["stock"][0])
        == [{"from_trigger": True, "payload": {"file": "a"}}]
    )


def test_the_statements_of_a_batch_do_not_grow_with_its_tasks(session):
    from airflow import settings
    from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

    from airflow_kestra_provider.triggerer.events import submit_events

    def statements(count: int, dag_id: str) -> int:
        names = [f"r{n}" for n in range(count)]
        ids = _deferred(session, dag_id, names)
        # first half resumed, second half ended: the ORM sends the UPDATEs of one shape in a row
        # (by primary key) as one executemany
        half = count // 2
        batch = [
            (ids[name], TaskSuccessEvent() if n >= half else TriggerEvent(n)) for n, name in enumerate(names)
        ]
        seen: list[str] = []

        def record(conn, cursor, statement, *args) -> None:
            seen.append(statement)

        sa_event.listen(settings.engine, "before_cursor_execute", record)
        try:
            submit_events(batch, session)
            session.commit()
        finally:
            sa_event.remove(settings.engine, "before_cursor_execute", record)
        return len(seen)

    from airflow.models.taskinstance import TaskInstance

    assert statements(4, "grow_small") == statements(40, "grow_large")
    ended = session.scalar(
        select(func.count()).where(TaskInstance.dag_id == "grow_large", TaskInstance.state == "success")
    )
    assert ended == 20


def test_a_callback_trigger_event_updates_its_callback_as_stock(session):
    """A trigger of a triggerer callback (a deadline's) has no task: the batch still finds it
    (the select of triggers keeps those with a callback) and hands the event to the callback."""
    from airflow.models.callback import Callback, TriggererCallback
    from airflow.models.trigger import Trigger
    from airflow.triggers.base import TriggerEvent

    from airflow_kestra_provider.triggerer.events import submit_events

    class Definition:
        def serialize(self) -> dict:
            return {"path": "builtins.print", "kwargs": {}}

    callbacks = {}
    for side in ("stock", "ours"):
        callback = TriggererCallback(Definition())
        callback.queue(session=session)
        session.add(callback)
        session.flush()
        callbacks[side] = (callback.id, callback.trigger_id)
    session.commit()
    event = {"state": "success", "body": "done"}
    Trigger.submit_event(trigger_id=callbacks["stock"][1], event=TriggerEvent(event), session=session)
    submit_events([(callbacks["ours"][1], TriggerEvent(event))], session)
    session.commit()
    session.expire_all()

    def outcome(side: str) -> tuple:
        stored = session.get(Callback, callbacks[side][0])
        return stored.state, stored.output, stored.trigger_id

    assert outcome("ours") == outcome("stock") == ("success", "done", None)
