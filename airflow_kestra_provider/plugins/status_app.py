"""The ``/kestra`` FastAPI app mounted in the api-server: a status page and its JSON endpoint.

Both routes require an authenticated Airflow user (Bearer token or the UI's session cookie),
through Airflow's own ``get_user`` dependency.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Kestra queue</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .7rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
</style></head><body>
<h2>KestraExecutor queue</h2>
<p id="note">loading ...</p>
<table id="queue"></table>
<h3>Workers</h3>
<table id="workers"></table>
<script>
const fmt = v => v === null || v === undefined ? "-" : (typeof v === "number" ? v.toFixed(3).replace(/\\.?0+$/, "") : String(v));
async function refresh() {
  const r = await fetch("api/status", {credentials: "same-origin"});
  if (!r.ok) { document.getElementById("note").textContent = "HTTP " + r.status; return; }
  const s = await r.json();
  document.getElementById("note").textContent = s.installed
    ? "last " + s.window_seconds + " s, refreshed " + new Date().toLocaleTimeString()
    : "KestraExecutor tables not created yet (no worker has started)";
  if (!s.installed) return;
  const l = s.run_latency_seconds;
  document.getElementById("queue").innerHTML =
    "<tr><th>queued TIs</th><th>running TIs</th><th>open claims</th><th>claims/s</th><th>run latency p50 / p90 / p99 (s)</th></tr>" +
    `<tr><td>${s.queued}</td><td>${s.running}</td><td>${s.claims_open}</td><td>${fmt(s.claims_per_second)}</td><td>${fmt(l.p50)} / ${fmt(l.p90)} / ${fmt(l.p99)}</td></tr>`;
  document.getElementById("workers").innerHTML =
    "<tr><th>worker</th><th>host</th><th>pid</th><th>embedded</th><th>concurrency</th><th>state</th><th>heartbeat age (s)</th></tr>" +
    s.workers.map(w => `<tr><td>${w.id}</td><td>${w.hostname}</td><td>${w.pid}</td><td>${w.embedded}</td><td>${w.concurrency}</td><td>${w.state}</td><td>${fmt(w.heartbeat_age_seconds)}</td></tr>`).join("");
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


def _authenticated() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return Depends(get_user)


def create_app() -> FastAPI:
    app = FastAPI(title="Kestra queue status", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, dependencies=[_authenticated()])
    def page() -> str:
        return PAGE

    @app.get("/api/status", dependencies=[_authenticated()])
    def status() -> dict[str, Any]:
        from airflow_kestra_provider.queue import claims

        with claims.session_scope() as session:
            return claims.queue_status(session)

    return app
