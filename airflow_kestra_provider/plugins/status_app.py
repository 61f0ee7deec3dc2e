"""The ``/kestra`` FastAPI app mounted in the api-server: the "Kestra queue" page and its JSON API.

The page (``static/kestra.html``) is one self-contained file, HTML, CSS and script, that reads the
``/kestra/api/v1`` endpoints below with the Airflow UI's own login cookie. Every route needs an
authenticated user (Airflow's ``get_user``: Bearer token or the UI's cookie; none: 401) and the
auth manager's permission (403 without it):

* reading (the page, ``GET /api/v1/...``): ``is_authorized_view(access_view=JOBS)``, the
  permission of Airflow's Jobs view (SimpleAuthManager: every role, viewer included);
* worker actions (``POST /api/v1/workers/{name}/...``): ``is_authorized_pool(method="PUT")``,
  editing pools: like pools, maintenance and drain decide how many task instances run where
  (SimpleAuthManager: op and admin).

Each endpoint runs one or two statements of :mod:`airflow_kestra_provider.queue.claims`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

PAGE_FILE = Path(__file__).resolve().parent / "static" / "kestra.html"
HISTORY_MINUTES = 60


class MaintenanceBody(BaseModel):
    on: bool


class DrainBody(BaseModel):
    pass


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def may_read(user: Any) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    return bool(_auth_manager().is_authorized_view(access_view=AccessView.JOBS, user=user))


def may_edit(user: Any) -> bool:
    return bool(_auth_manager().is_authorized_pool(method="PUT", user=user))


def reader(user: Annotated[BaseUser, Depends(get_user)]) -> BaseUser:
    if not may_read(user):
        raise HTTPException(403, "Forbidden: needs read access to Jobs")
    return user


def editor(request: Request, user: Annotated[BaseUser, Depends(reader)]) -> BaseUser:
    if not may_edit(user):
        raise HTTPException(403, "Forbidden: needs edit access to Pools")
    # a JSON body: a cross-site form cannot send one without a CORS preflight
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send a JSON body (Content-Type: application/json)")
    return user


def create_app() -> FastAPI:
    from airflow_kestra_provider import fleet, settings
    from airflow_kestra_provider.queue import claims

    app = FastAPI(title="Kestra queue", docs_url=None, redoc_url=None, openapi_url=None)
    page = PAGE_FILE.read_text(encoding="utf-8")
    installed = False  # once our tables are there, they stay

    def tables_there(session: Any) -> bool:
        nonlocal installed
        if not installed:
            installed = claims.tables_present(session)
        return installed

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(reader)])
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/api/v1/queue", dependencies=[Depends(reader)])
    def queue() -> dict[str, Any]:
        with claims.session_scope() as session:
            if not tables_there(session):
                return {"installed": False}
            depths = claims.queue_depths(session, settings.worker_timeout())
            history = claims.queue_history(session, HISTORY_MINUTES)
        return {
            "installed": True,
            "waiting": sum(d.waiting for d in depths),
            "queues": [
                {
                    "queue": d.queue,
                    "waiting": d.waiting,
                    "oldest_age_seconds": d.oldest_age,
                    "served": d.served,
                }
                for d in depths
            ],
            "history_minutes": HISTORY_MINUTES,
            "history": [asdict(m) for m in history],
        }

    @app.get("/api/v1/latency", dependencies=[Depends(reader)])
    def latency(dag_id: str | None = None) -> dict[str, Any]:
        with claims.session_scope() as session:
            if not tables_there(session):
                return {"installed": False}
            return {"installed": True, **claims.latency(session, dag_id or None, HISTORY_MINUTES)}

    @app.get("/api/v1/workers")
    def workers(user: Annotated[BaseUser, Depends(reader)]) -> dict[str, Any]:
        interval, timeout = settings.worker_heartbeat_interval(), settings.worker_timeout()
        with claims.session_scope() as session:
            if not tables_there(session):
                return {"installed": False}
            rows = claims.list_workers(session)
        table = fleet.worker_table(rows, interval, timeout)
        for row in table:
            row["badge"] = row["state"].split(" ")[0]  # "dead (embedded)" -> dead
        return {
            "installed": True,
            "can_edit": may_edit(user),
            "heartbeat_interval": interval,
            "worker_timeout": timeout,
            "workers": table,
        }

    def change(name: str, state: str, from_states: tuple[str, ...], refuse: Any = None) -> dict[str, Any]:
        with claims.session_scope() as session:
            try:
                row = fleet.change_state(session, name, state, from_states, refuse)
            except fleet.StateChangeRefused as err:
                raise HTTPException(404 if err.unknown else 409, str(err)) from err
        return {"name": name, "state": state, "changed": row.state != state}

    @app.post("/api/v1/workers/{name:path}/maintenance", dependencies=[Depends(editor)])
    def maintenance(name: str, body: MaintenanceBody) -> dict[str, Any]:
        return change(name, *(fleet.MAINTENANCE_ON if body.on else fleet.MAINTENANCE_OFF))

    @app.post("/api/v1/workers/{name:path}/drain", dependencies=[Depends(editor)])
    def drain(name: str, body: DrainBody) -> dict[str, Any]:
        return change(name, *fleet.DRAIN, refuse=lambda row: fleet.drain_refusal(name, row))

    return app
