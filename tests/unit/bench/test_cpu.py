from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from airflow_kestra_provider.bench.cpu import component_of, cpu_per_run, cpu_table, tree_seconds


def test_cpu_per_run_divides_each_component_and_the_total():
    before = {"scheduler": 10.0, "api-server": 5.0, "postgres": 1.0, "gone": 3.0}
    after = {"scheduler": 22.0, "api-server": 11.0, "postgres": 4.0}
    report = cpu_per_run(before, after, runs=240, wall_seconds=60.0)
    rows = {r["component"]: r for r in report["components"]}
    assert set(rows) == {"scheduler", "api-server", "postgres"}  # missing after: left out
    assert rows["scheduler"]["cpu_seconds"] == pytest.approx(12.0)
    assert rows["scheduler"]["per_run"] == pytest.approx(0.05)
    assert rows["scheduler"]["cores"] == pytest.approx(0.2)
    assert rows["api-server"]["per_run"] == pytest.approx(0.025)
    assert rows["postgres"]["share"] == pytest.approx(3.0 / 21.0)
    assert [r["component"] for r in report["components"]] == ["scheduler", "api-server", "postgres"]
    assert report["total"] == pytest.approx({"cpu_seconds": 21.0, "per_run": 0.0875, "cores": 0.35})


def test_cpu_per_run_without_runs_has_no_per_run_figures_and_never_goes_negative():
    report = cpu_per_run({"a": 5.0}, {"a": 4.0}, runs=0, wall_seconds=1.0)
    assert report["components"][0]["cpu_seconds"] == 0.0
    assert report["components"][0]["per_run"] is None
    assert report["total"]["per_run"] is None
    assert "-" in cpu_table(report)
    with pytest.raises(ValueError):
        cpu_per_run({}, {}, runs=1, wall_seconds=0)


def test_table_lists_components_and_total():
    report = cpu_per_run({"scheduler": 0.0, "postgres": 0.0}, {"scheduler": 3.0, "postgres": 1.0}, 100, 10.0)
    table = cpu_table(report)
    assert "scheduler" in table and "0.0300" in table and "75%" in table
    assert table.splitlines()[-1].split()[:3] == ["total", "4.00", "0.0400"]


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/v/bin/python", "-m", "airflow", "kestra", "scheduler"], "scheduler"),
        (["/v/bin/python", "-m", "airflow", "kestra", "triggerer"], "triggerer"),
        (["/v/bin/airflow", "scheduler"], "scheduler"),
        (["/v/bin/python", "-m", "airflow", "dag-processor"], "dag-processor"),
        (["airflow api_server -- host:127.0.0.1 port:8080", "", ""], "api-server"),
        (["/v/bin/python", "/v/bin/airflow", "kestra", "standalone"], "standalone"),
        (["/v/bin/python", "-m", "airflow", "kestra", "bench", "run"], None),
        (["postgres", "-D", "/data"], None),
        (["/v/bin/python", "-m", "airflow", "celery", "worker", "--concurrency", "8"], "celery-worker"),
        (["[celeryd: celery@vm:MainProcess] -active- (-m airflow celery worker)"], "celery-worker"),
        (["airflow edge worker: edge-worker-1"], "edge-worker"),
        (["/usr/bin/redis-server 127.0.0.1:40123"], "redis"),
    ],
)
def test_component_of(cmdline, expected):
    assert component_of(cmdline) == expected


def test_tree_seconds_counts_children_that_already_ended():
    """A real process tree: CPU burnt by a child that exited and was reaped stays counted."""
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
    parent_code = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
        "print('reaped', flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "reaped"
        times = tree_seconds(psutil.Process(parent.pid))
        assert times.processes == 1  # the child is gone ...
        assert times.seconds >= 0.3  # ... but its CPU time is still in the tree
    finally:
        parent.kill()
        parent.wait()


def test_tree_seconds_keeps_what_descendants_reaped_apart():
    """Like a runner under the scheduler: a child forks a task process and reaps it; its CPU is
    the tree's ``reaped_seconds`` (the root's own reaped children are not)."""
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
    runner = f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
    runner += "print('reaped', flush=True)\ntime.sleep(30)\n"
    root_code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {runner!r}])\n"
    root = subprocess.Popen([sys.executable, "-c", root_code], stdout=subprocess.PIPE, text=True)
    try:
        assert root.stdout is not None
        assert root.stdout.readline().strip() == "reaped"
        times = tree_seconds(psutil.Process(root.pid))
        assert times.processes == 2
        assert times.reaped_seconds >= 0.3
        assert times.own_seconds + times.reaped_seconds <= times.seconds
    finally:
        for child in psutil.Process(root.pid).children(recursive=True):
            child.kill()
        root.kill()
        root.wait()


def test_root_only_figures_ride_along_without_entering_the_total():
    before = {"scheduler": 1.0, "scheduler:own": 0.5, "scheduler:reaped": 0.2, "postgres": 0.0}
    after = {"scheduler": 11.0, "scheduler:own": 4.5, "scheduler:reaped": 3.2, "postgres": 2.0}
    report = cpu_per_run(before, after, runs=100, wall_seconds=10.0)
    rows = {r["component"]: r for r in report["components"]}
    assert set(rows) == {"scheduler", "postgres"}
    assert rows["scheduler"]["own_seconds"] == pytest.approx(4.0)
    assert rows["scheduler"]["own_per_run"] == pytest.approx(0.04)
    assert rows["scheduler"]["reaped_per_run"] == pytest.approx(0.03)
    assert "own_seconds" not in rows["postgres"]
    assert report["total"]["cpu_seconds"] == pytest.approx(12.0)
