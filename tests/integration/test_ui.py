"""The "Kestra queue" page and its ``/kestra/api/v1`` API on a real stack (KestraExecutor, embedded
worker, ``airflow kestra scheduler``), behind SimpleAuthManager with an admin and a viewer; then in
headless Chromium through Airflow's login page and navigation. The stack serves Airflow under a
sub-path (``[api] base_url`` ending in ``/airflow/``), as behind a reverse proxy: every request
of these tests, the browser's included, goes through it.

One stack for the whole module. ``KESTRA_UI_SCREENSHOTS=docs/img`` also writes the browser
test's screenshots there; ``KESTRA_UI_COST=1`` runs the page-cost measurement (2 minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from airflow_kestra_provider.stack.environment import KESTRA_EXECUTOR, free_port
from tests.integration.conftest import DAGS_EXAMPLES, REPO, wait_until
from tests.integration.reliability import trigger, wait_runs_terminal
from tests.integration.workload_rows import add_row

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
NOOP = "kestra_bench_noop"
TEST_QUEUE = "ui_test_queue"
TEST_DAG = "ui_test_dag"
BASE_PATH = "/airflow"


@pytest.fixture(scope="module")
def stack(start_stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui_dags")
    shutil.copy(DAGS_EXAMPLES / f"{NOOP}.py", folder / f"{NOOP}.py")
    return start_stack(
        executor=KESTRA_EXECUTOR,
        scheduler_args=("kestra", "scheduler"),
        dags_folder=folder,
        base_path=BASE_PATH,
        extra={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__KESTRA__WORKER_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        },
    )


def password(stack, user: str) -> str:
    path = stack.config.home / "simple_auth_manager_passwords.json.generated"
    return str(json.loads(path.read_text())[user])


def http(stack, user: str | None = None) -> httpx.Client:
    """A client of the api-server, with ``user``'s Bearer token (None: anonymous)."""
    client = httpx.Client(base_url=stack.config.base_url, timeout=30)
    if user is not None:
        response = client.post("/auth/token", json={"username": user, "password": password(stack, user)})
        response.raise_for_status()
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


@pytest.fixture(scope="module")
def admin(stack):
    client = http(stack, "admin")
    yield client
    client.close()


@pytest.fixture(scope="module")
def viewer(stack):
    client = http(stack, "viewer")
    yield client
    client.close()


def embedded_worker(admin: httpx.Client) -> dict:
    def find():
        workers = admin.get("/kestra/api/v1/workers").json()["workers"]
        return next((w for w in workers if w["embedded"] and w["badge"] == "healthy"), None)

    return wait_until(find, 60, "no healthy embedded worker listed")


def test_anonymous_gets_401_everywhere(stack):
    with http(stack) as anonymous:
        for path in ("/kestra/", "/kestra/api/v1/queue", "/kestra/api/v1/latency", "/kestra/api/v1/workers"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.post("/kestra/api/v1/workers/w/drain", json={}).status_code == 401
        assert anonymous.post("/kestra/api/v1/workers/w/maintenance", json={"on": True}).status_code == 401


def test_a_viewer_reads_but_gets_403_on_actions(admin, viewer):
    name = embedded_worker(admin)["name"]
    assert viewer.get("/kestra/").status_code == 200
    listed = viewer.get("/kestra/api/v1/workers").json()
    assert listed["can_edit"] is False and any(w["name"] == name for w in listed["workers"])
    assert viewer.get("/kestra/api/v1/queue").status_code == 200
    assert viewer.get("/kestra/api/v1/latency").status_code == 200
    response = viewer.post(f"/kestra/api/v1/workers/{name}/maintenance", json={"on": True})
    assert response.status_code == 403, response.text
    assert viewer.post(f"/kestra/api/v1/workers/{name}/drain", json={}).status_code == 403
    assert admin.get("/kestra/api/v1/workers").json()["can_edit"] is True
    assert admin.post("/kestra/api/v1/workers/nobody/drain", json={}).status_code == 404
    assert admin.post(f"/kestra/api/v1/workers/{name}/drain", content=b"{}").status_code == 415


def test_the_api_counts_the_rows_of_the_queue(admin, db):
    worker = embedded_worker(admin)
    name = worker["name"]
    # in maintenance the embedded worker claims nothing: rows inserted below stay waiting
    response = admin.post(f"/kestra/api/v1/workers/{name}/maintenance", json={"on": True})
    assert response.json() == {"name": name, "state": "maintenance", "changed": True}
    assert admin.post(f"/kestra/api/v1/workers/{name}/drain", json={}).status_code == 409  # embedded
    try:
        with db.begin() as conn:
            for ago in (90, 60, 30):
                add_row(conn, queue=TEST_QUEUE, created=f"{ago} seconds")
            for seconds in (1, 2, 3, 4):  # ended 2 minutes ago, claimed 0.5 s after queued
                add_row(
                    conn,
                    dag_id=TEST_DAG,
                    created=f"{120 + seconds} seconds",
                    claimed=f"{120 + seconds - 0.5} seconds",
                    finished="120 seconds",
                    result="success",
                )
        queue = admin.get("/kestra/api/v1/queue").json()
        ours = next(q for q in queue["queues"] if q["queue"] == TEST_QUEUE)
        assert ours["waiting"] == 3 and not ours["served"]  # its only worker is in maintenance
        assert 88 <= ours["oldest_age_seconds"] <= 120
        assert len(queue["history"]) == 60 and queue["history"][-1]["depth"] == queue["waiting"]
        assert sum(m["claims"] for m in queue["history"]) >= 4
        assert sum(m["completions"] for m in queue["history"]) >= 4
        latency = admin.get("/kestra/api/v1/latency", params={"dag_id": TEST_DAG}).json()
        assert latency["run_latency"]["last_5m"]["count"] == 4
        assert latency["run_latency"]["last_5m"]["p50"] == pytest.approx(2.5)
        assert latency["queued_to_claimed"]["window"]["p99"] == pytest.approx(0.5)
        assert {"dag_id": TEST_DAG, "ended": 4} in latency["dags"]
        assert len(latency["schedulers"]) == 1 and latency["schedulers"][0]["heartbeat_age"] < 30
        loops = wait_until(
            lambda: admin.get("/kestra/api/v1/latency").json()["schedulers"][0]["loops_5m"],
            30,
            "airflow kestra scheduler stored no loops",
        )
        assert loops["loops"] >= 1 and 0 < loops["mean"] <= loops["max"]
        assert len(latency["scheduler_loops"]) == 60
        workers = admin.get("/kestra/api/v1/workers").json()["workers"]
        assert next(w for w in workers if w["name"] == name)["badge"] == "maintenance"
    finally:
        with db.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM kestra_workload WHERE queue = :q OR dag_id = :d"),
                {"q": TEST_QUEUE, "d": TEST_DAG},
            )
        response = admin.post(f"/kestra/api/v1/workers/{name}/maintenance", json={"on": False})
        assert response.json()["state"] == "running"
    wait_until(lambda: embedded_worker(admin), 30, "the embedded worker did not come back")


# -- the browser ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (Playwright drives it; no browser download)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # install; if that fails, refresh the package lists and install again
    for argv in (
        ["apt-get", "install", "-y", "chromium"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "chromium"],
    ):
        if CHROMIUM.exists():
            break
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, capture_output=True, timeout=900, env=env, check=False)
    if not CHROMIUM.exists():
        pytest.skip("no headless browser: `apt-get install -y chromium` failed")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (the test extra) is not installed"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def log_in(browser, stack, user: str = "admin"):
    """A browser page logged in through Airflow's login page."""
    context = browser.new_context(viewport={"width": 1440, "height": 1180}, color_scheme="light")
    page = context.new_page()
    page.goto(stack.config.base_url + "/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password(stack, user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=60_000)
    return page


def screenshot_dirs(tmp_path: Path) -> list[Path]:
    dirs = [tmp_path]
    wanted = os.environ.get("KESTRA_UI_SCREENSHOTS")
    if wanted:
        target = Path(wanted) if Path(wanted).is_absolute() else REPO / wanted
        target.mkdir(parents=True, exist_ok=True)
        dirs.append(target)
    return dirs


def test_the_page_in_the_airflow_ui_fills_while_runs_go_in_both_themes(stack, admin, db, browser, tmp_path):
    embedded_worker(admin)
    # a stopped worker with markup in its name: shown as text, never as markup
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO kestra_worker (id, name, hostname, pid, embedded, concurrency, state,"
                " started_at, heartbeat_at, queues, version)"
                " VALUES ('ui-test-html', '<b>bold</b>', 'elsewhere', 1, false, 4, 'stopped',"
                " now() - interval '5 minutes', now() - interval '1 minute', ARRAY['default'], 'test')"
            )
        )
    page = log_in(browser, stack)
    responses: list[tuple[int, str]] = []
    page.on("response", lambda r: responses.append((r.status, r.url)))
    page.get_by_role("link", name="Kestra queue").first.click()
    page.wait_for_url(re.compile(rf"{BASE_PATH}/plugin/kestra"))
    frame = page.frame_locator("iframe[title='Kestra queue']")
    workers = frame.locator("#workers-table tbody tr")
    workers.first.wait_for(timeout=30_000)
    # under the sub-path: the page and its API calls too (events arrive while Playwright waits)
    ours = f"{stack.config.base_url}/kestra/"
    kestra_responses = [r for r in responses if "/kestra/" in r[1]]
    assert (200, ours) in kestra_responses and (200, ours + "api/v1/workers") in kestra_responses
    assert all(status == 200 and url.startswith(ours) for status, url in kestra_responses), kestra_responses
    embedded_row = frame.locator("#workers-table tbody tr", has_text="(embedded)")
    assert embedded_row.locator(".badge").inner_text() == "healthy"
    html_row = frame.locator("tr[data-worker='<b>bold</b>']")
    assert html_row.locator("td").first.inner_text() == "<b>bold</b>"
    assert frame.locator("#workers-table b").count() == 0
    assert html_row.locator(".badge").inner_text() == "stopped"
    assert frame.locator("#workers-table button").count() >= 1  # the admin may act
    with db.begin() as conn:
        conn.execute(sa.text("DELETE FROM kestra_worker WHERE id = 'ui-test-html'"))
    # no run yet: empty states, not errors
    assert frame.locator("#latency-empty").is_visible()
    assert frame.locator("#queue-empty").is_visible()
    assert "HTTP" not in frame.locator("#status").inner_text()

    with stack.client() as client:
        client.wait_for_dag(NOOP, timeout=120)
    trigger(stack, NOOP, 12)
    states = wait_runs_terminal(stack, db, NOOP, 12, timeout=180)
    assert states == {"success": 12}, states
    # the page fills without a reload (latency every 10 s)
    frame.locator("#latency-table tbody tr").first.wait_for(timeout=30_000)
    wait_until(
        lambda: int(frame.locator("#latency-table tbody tr").first.locator("td").nth(8).inner_text()) >= 12,
        30,
        "the latency panel did not count the runs",
    )
    assert frame.locator("#queue-chart path.s2").get_attribute("d")  # completions drawn
    assert frame.locator("#latency-chart path.s0").get_attribute("d")
    # the scheduler's loops (airflow kestra scheduler writes them every 10 s; no data: an en dash)
    loops_per_minute = frame.locator("#scheduler-table tbody tr").first.locator("td").nth(2)
    wait_until(
        lambda: loops_per_minute.inner_text() != "\u2013",
        30,
        "the scheduler's loops did not show",
    )
    assert frame.locator("#loop-chart path.s0").get_attribute("d")
    frame.locator("#dag").select_option(NOOP)
    frame.locator("#latency-empty").wait_for(state="hidden")
    assert frame.locator("html").get_attribute("data-theme") == "light"
    time.sleep(1)
    dirs = screenshot_dirs(tmp_path)
    for folder in dirs:
        page.screenshot(path=str(folder / "ui-light.png"))

    switch_to_dark(page)
    wait_until(
        lambda: frame.locator("html").get_attribute("data-theme") == "dark", 10, "the page stayed light"
    )
    time.sleep(1)
    for folder in dirs:
        page.screenshot(path=str(folder / "ui-dark.png"))
    page.context.close()


def switch_to_dark(page) -> None:
    """Airflow's own control: User menu > Appearance > Dark Mode."""
    page.get_by_role("button", name="User").click()
    page.get_by_text("Appearance").click()
    page.get_by_text("Dark Mode").click()


# -- what the page costs --------------------------------------------------------------------------
def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def api_and_postgres(stack, embedded_postgres) -> tuple[list[psutil.Process], list[psutil.Process]]:
    api = next(c for c in stack.supervisor.components if c.name == "api-server")
    root = psutil.Process(api.process.pid)
    postmaster = psutil.Process(embedded_postgres.pid())
    return [root, *root.children(recursive=True)], [postmaster, *postmaster.children(recursive=True)]


def measure(stack, embedded_postgres, seconds: float) -> tuple[float, float]:
    """CPU seconds of the api-server tree and of PostgreSQL over ``seconds`` (processes that end
    during it count up to their last reading)."""
    api, postgres = api_and_postgres(stack, embedded_postgres)
    before = cpu_seconds(api), cpu_seconds(postgres)
    time.sleep(seconds)
    api_now, postgres_now = api_and_postgres(stack, embedded_postgres)
    seen_api = {p.pid for p in api}
    seen_pg = {p.pid for p in postgres}
    new_api = [p for p in api_now if p.pid not in seen_api]
    new_pg = [p for p in postgres_now if p.pid not in seen_pg]
    return (
        cpu_seconds(api) + cpu_seconds(new_api) - before[0],
        cpu_seconds(postgres) + cpu_seconds(new_pg) - before[1],
    )


@pytest.mark.skipif(
    not os.environ.get("KESTRA_UI_COST"), reason="set KESTRA_UI_COST=1 to measure (2 minutes)"
)
def test_cost_of_five_open_tabs(stack, browser, embedded_postgres):
    seconds = 60.0
    time.sleep(30)  # let the stack's start-up work (first parse, migrations' aftermath) settle
    idle = measure(stack, embedded_postgres, seconds)
    page = log_in(browser, stack)
    tabs = [page]
    for _ in range(4):
        tabs.append(page.context.new_page())
    for tab in tabs:
        tab.goto(stack.config.base_url + "/kestra/")
        tab.locator("#workers-table tbody tr").first.wait_for(timeout=30_000)
    time.sleep(5)
    with_tabs = measure(stack, embedded_postgres, seconds)
    page.context.close()
    result = {
        "seconds": seconds,
        "api_server_cpu_s": {"without": round(idle[0], 2), "with_5_tabs": round(with_tabs[0], 2)},
        "postgres_cpu_s": {"without": round(idle[1], 2), "with_5_tabs": round(with_tabs[1], 2)},
        "load_average": os.getloadavg(),
    }
    print("\nKESTRA_UI_COST " + json.dumps(result))
