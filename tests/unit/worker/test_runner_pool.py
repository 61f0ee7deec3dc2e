"""The runner pool with real forked runner processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from airflow_kestra_provider.worker.runner_pool import Job, RunnerPool, scrub_environment


class SlowUnknownWorkload:
    """Not an Airflow workload: a runner blocks on ``display_name`` for a while, then
    ``run_workload`` rejects it, so the pool must report the job failed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @property
    def display_name(self) -> str:
        time.sleep(self.seconds)
        return "slow"


def collect_until(pool: RunnerPool, count: int, timeout: float = 30.0):
    results = []
    deadline = time.monotonic() + timeout
    while len(results) < count and time.monotonic() < deadline:
        results.extend(pool.collect(0.2))
    return results


def test_rejected_workload_is_reported_failed():
    pool = RunnerPool(2, server="http://127.0.0.1:1/execution/")
    pool.start()
    try:
        assert pool.free_slots == 2
        assert pool.submit(Job("w-1", SlowUnknownWorkload(0)))
        assert pool.free_slots == 1
        [result] = collect_until(pool, 1)
        assert (result.workload_id, result.result) == ("w-1", "failed")
        assert "Unknown workload type" in (result.detail or "")
        assert pool.free_slots == 2
    finally:
        pool.stop(drain=False)


def test_killed_runner_fails_its_job_and_is_replaced():
    pool = RunnerPool(1, server=None)
    pool.start()
    try:
        [runner] = pool._runners
        assert pool.submit(Job("w-2", SlowUnknownWorkload(60)))
        assert not pool.submit(Job("w-3", SlowUnknownWorkload(0)))  # no idle runner
        time.sleep(0.5)
        os.kill(runner.process.pid, signal.SIGKILL)
        [result] = collect_until(pool, 1, timeout=10)
        assert (result.workload_id, result.result) == ("w-2", "failed")
        assert "exited with code -9" in (result.detail or "")
        assert pool.free_slots == 1
        assert pool._runners[0].process.pid != runner.process.pid
    finally:
        pool.stop(drain=False)


def test_stop_without_drain_kills_running_jobs():
    pool = RunnerPool(1, server=None)
    pool.start()
    assert pool.submit(Job("w-4", SlowUnknownWorkload(60)))
    time.sleep(0.3)
    started = time.monotonic()
    results = pool.stop(drain=False)
    assert time.monotonic() - started < 15
    assert [(r.workload_id, r.result) for r in results] == [("w-4", "failed")]


class ForkingWorkload:
    """Like a task under ``supervise_task``: the runner forks a child (the 'task process', in its
    own process group) that writes its pid to ``pid_file`` and sleeps; the runner waits for it."""

    def __init__(self, pid_file: str) -> None:
        self.pid_file = pid_file

    @property
    def display_name(self) -> str:
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            with open(self.pid_file, "w") as out:
                out.write(str(os.getpid()))
            time.sleep(120)
            os._exit(0)
        os.waitpid(pid, 0)
        return "forked"


def _wait_pid_file(path, timeout: float = 10.0) -> int:
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = Path(path).read_text().strip() if os.path.exists(path) else ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"no pid in {path}")


def _gone(pid: int, timeout: float = 10.0) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_runner_takes_its_task_process_with_it(tmp_path):
    pool = RunnerPool(1, server=None)
    pool.start()
    try:
        [runner] = pool._runners
        pid_file = tmp_path / "task.pid"
        assert pool.submit(Job("w-5", ForkingWorkload(str(pid_file))))
        task_pid = _wait_pid_file(pid_file)
        time.sleep(0.2)
        assert runner.task_pid.value == task_pid  # the runner recorded its task's pid
        os.kill(runner.process.pid, signal.SIGKILL)
        [result] = collect_until(pool, 1, timeout=10)
        assert result.result == "failed"
        assert _gone(task_pid), "the task process outlived its runner"
    finally:
        pool.stop(drain=False)


WORKER_KILLED_ALONE = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
from tests.unit.worker.test_runner_pool import ForkingWorkload
from airflow_kestra_provider.worker.runner_pool import Job, RunnerPool
pool = RunnerPool(2, server=None)
pool.start()
pool.submit(Job("w", ForkingWorkload(sys.argv[1])))
print("RUNNERS", " ".join(str(r.process.pid) for r in pool._runners), flush=True)
time.sleep(120)
"""


def test_nothing_outlives_a_worker_killed_alone(tmp_path):
    """SIGKILL of the worker's own pid only (not its tree): its runners and their task
    processes all go within seconds."""
    import subprocess
    import sys
    from pathlib import Path

    pid_file = tmp_path / "task.pid"
    repo = str(Path(__file__).resolve().parents[3])
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_KILLED_ALONE, str(pid_file), repo], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        line = ""
        while not line.startswith("RUNNERS"):
            line = worker.stdout.readline()
            assert line, "the worker process exited"
        runners = [int(p) for p in line.split()[1:]]
        task_pid = _wait_pid_file(pid_file, timeout=60)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        left = [pid for pid in [*runners, task_pid] if not _gone(pid, timeout=10)]
        assert left == [], f"processes left after the worker was killed: {left}"
    finally:
        worker.kill()


def test_scrub_environment_removes_credentials_only():
    environ = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:p@h/db",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /secret",
        "AIRFLOW__API_AUTH__JWT_SECRET": "s3cret",
        "AIRFLOW__API__SECRET_KEY": "k",
        "AIRFLOW_HOME": "/home",
        "PATH": "/bin",
    }
    removed = scrub_environment(environ)
    assert sorted(environ) == ["AIRFLOW_HOME", "PATH"]
    assert len(removed) == 4


PARSE_AFTER_PRELOAD = """
import os, runpy, sys
from airflow_kestra_provider.worker.runner_pool import preload
if sys.argv[2] == "preload":
    preload()
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # like a task process: forked, then parses its DAG file as the task runner does
    before = set(sys.modules)
    import airflow.dag_processing.dagbag  # what the task runner's parse() imports first
    runpy.run_path(sys.argv[1])
    os.write(write, "\\n".join(sorted(set(sys.modules) - before)).encode())
    os._exit(0)
os.close(write)
chunks = []
while chunk := os.read(read, 65536):
    chunks.append(chunk)
_, status = os.waitpid(pid, 0)
print(b"".join(chunks).decode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _imported_by_dag_parse(mode: str) -> set[str]:
    import subprocess
    import sys
    from pathlib import Path

    dag_file = Path(__file__).resolve().parents[3] / "dags_examples" / "kestra_bench_noop.py"
    out = subprocess.run(
        [sys.executable, "-c", PARSE_AFTER_PRELOAD, str(dag_file), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {line for line in out.splitlines() if line and not line.startswith("<")}


def test_preload_leaves_a_forked_task_nothing_to_import_for_a_taskflow_dag():
    """Without the preload a forked child imports the SDK's decorators and the standard provider
    (dozens of modules) to parse the no-op DAG; after it, none of them."""
    cold = _imported_by_dag_parse("cold")
    assert "airflow.sdk.definitions.decorators" in cold
    assert "airflow.dag_processing.dagbag" in cold
    assert any(m.startswith("airflow.providers.standard") for m in cold)
    warm = _imported_by_dag_parse("preload")
    assert not [m for m in warm if m.startswith(("airflow", "pydantic", "packaging", "jinja2"))], warm


SSL_CONTEXTS_AFTER_PRELOAD = """
import ssl, sys
from airflow_kestra_provider.worker.runner_pool import preload
if sys.argv[1] == "preload":
    preload()
built = []
real = ssl.create_default_context
ssl.create_default_context = lambda *a, **k: built.append(1) or real(*a, **k)
from airflow.sdk.api.client import Client
from airflow_kestra_provider.worker.api_client import RetryWindowClient
for _ in range(2):  # like a runner's first two tasks
    Client(base_url="http://127.0.0.1:1", token="t").close()
    RetryWindowClient(retry_window=5.0, base_url="http://127.0.0.1:1", token="t").close()
print(len(built))
"""


@pytest.mark.parametrize(("mode", "built"), [("cold", 2), ("preload", 0)])
def test_preload_builds_the_ssl_context_of_both_client_classes(mode, built):
    """A runner's tasks use ``RetryWindowClient``, whose cached SSL context is its own (the cache
    is per class): after the preload neither class builds one, cold each builds it once."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", SSL_CONTEXTS_AFTER_PRELOAD, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert out.split()[-1] == str(built)


class SecretHunt:
    """Like a task under ``supervise_task``: the runner forks a child that looks for the secrets
    everywhere a task could: its environment, its own and its runner's exec-time environment
    (``/proc/<pid>/environ``), and Airflow's engine and config in the memory it inherited."""

    def __init__(self, out: str) -> None:
        self.out = out

    @property
    def display_name(self) -> str:
        pid = os.fork()
        if pid == 0:
            import json
            from pathlib import Path

            found = {"environ": dict(os.environ)}
            for who in ("self", str(os.getppid())):
                found[f"proc/{who}/environ"] = (
                    Path(f"/proc/{who}/environ").read_bytes().decode(errors="replace")
                )
            try:
                import gc

                import sqlalchemy
                from airflow.configuration import conf

                found["engines"] = [
                    o.url.render_as_string(hide_password=False)
                    for o in gc.get_objects()
                    if isinstance(o, sqlalchemy.engine.Engine)
                ]
                found["conf"] = conf.get("database", "sql_alchemy_conn", fallback="")
                found["jwt"] = conf.get("api_auth", "jwt_secret", fallback="")
            except Exception as err:
                found["error"] = repr(err)
            Path(self.out).write_text(json.dumps(found))
            os._exit(0)
        os.waitpid(pid, 0)
        return "hunted"


def test_a_task_finds_no_secret_of_its_worker(tmp_path, monkeypatch):
    """The worker process has the database URL and the JWT secret in its environment (and so in
    its /proc environ); its runners come from a forkserver exec'd without them."""
    import json

    from airflow_kestra_provider.worker import forkserver

    secrets = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://kestra:hunter2-db@db.example/airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET": "hunter2-jwt-secret-value",
        "AIRFLOW__CORE__FERNET_KEY": "hunter2-fernet-key-value",
        "AIRFLOW__API__SECRET_KEY": "hunter2-api-secret-key",
    }
    script = f"""
import os, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
from tests.unit.worker.test_runner_pool import SecretHunt, collect_until
from airflow_kestra_provider.worker.runner_pool import Job, RunnerPool
pool = RunnerPool(1, server=None)
pool.start()
pool.submit(Job("w", SecretHunt(sys.argv[1])))
print(collect_until(pool, 1))
pool.stop(drain=False)
"""
    import subprocess
    import sys

    out = tmp_path / "found.json"
    env = {**os.environ, **secrets}
    subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=120)
    found = json.loads(out.read_text())
    assert "AIRFLOW_HOME" in found["environ"] or "PATH" in found["environ"]  # the hunt is real
    assert forkserver.is_secret("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD")
    text = json.dumps(found)
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == [], f"a task could read {leaked}: {found}"
