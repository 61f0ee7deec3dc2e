"""CPU-seconds per run of each component of the benched stack (``bench run --cpu``).

Wall-clock latency on a shared machine depends on the neighbours; the CPU time a stack spends
per run does not (much). This module finds each component's process tree (api-server, scheduler
with its embedded worker and runner pool, dag-processor, triggerer, and the PostgreSQL server
the metadata database lives on), samples its CPU time before and after a load step, and divides
the difference by the runs of the step.

A tree's CPU time is the user + system time of every live process in it plus the time of the
children its members have already reaped (``children_user`` / ``children_system``): task
processes, forked supervisors and PostgreSQL backends that ended during the step are counted
by the process that waited for them. Only processes reaped by something outside the tree are
lost; for the stacks this provider starts, none are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

POSTGRES = "postgres"
OWN_SUFFIX = ":own"
REAPED_SUFFIX = ":reaped"
# Component name by the first words after ``airflow`` on a command line.
_COMPONENT_COMMANDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("kestra", "scheduler"), "scheduler"),
    (("kestra", "worker"), "kestra-worker"),
    (("kestra", "standalone"), "standalone"),
    (("kestra", "triggerer"), "triggerer"),
    (("api-server",), "api-server"),
    (("api_server",), "api-server"),  # the title the api-server gives itself
    (("scheduler",), "scheduler"),
    (("dag-processor",), "dag-processor"),
    (("triggerer",), "triggerer"),
    (("celery", "worker"), "celery-worker"),
    (("edge", "worker"), "edge-worker"),
)


def component_of(cmdline: list[str]) -> str | None:
    """The Airflow component a command line runs (``python -m airflow scheduler`` -> scheduler).

    A process that set its own title has one space-separated string as its command line.
    """
    words = " ".join(cmdline).split()
    if words and words[0].endswith("redis-server"):
        return "redis"  # a Celery stack's own broker (told apart from others by AIRFLOW_HOME)
    if words and words[0].lstrip("[").startswith("celeryd:"):
        return "celery-worker"  # Celery retitles its worker "[celeryd: celery@host:MainProcess] ..."
    for index, word in enumerate(words):
        if word == "airflow" or word.endswith("/airflow"):
            rest = tuple(w.rstrip(":") for w in words[index + 1 : index + 3])  # "worker: name" titles
            for prefix, name in _COMPONENT_COMMANDS:
                if rest[: len(prefix)] == prefix:
                    return name
            return None
    return None


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds of one component's process tree at one instant.

    ``own_seconds`` is the root process alone (its threads, without any child): for the
    scheduler that is the scheduler loop and the embedded worker, the rest being the runner
    pool, the task supervisors and the tasks. ``reaped_seconds`` is what the root's descendants
    have reaped: for the scheduler, the task processes that ended (a runner or a LocalExecutor
    worker forks each task and waits for it).
    """

    seconds: float
    processes: int
    own_seconds: float = 0.0
    reaped_seconds: float = 0.0


def tree_seconds(root: psutil.Process) -> CpuTimes:
    """User + system seconds of ``root`` and every live descendant, with their reaped children."""
    total = 0.0
    own = 0.0
    reaped = 0.0
    count = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        members = [root, *root.children(recursive=True)]
        for proc in members:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
                count += 1
                if proc is root:
                    own = t.user + t.system
                else:
                    reaped += t.children_user + t.children_system
    return CpuTimes(total, count, own, reaped)


def find_components(
    airflow_home: str | os.PathLike[str], user: str | None = None, api_port: int | None = None
) -> dict[str, int]:
    """Root pid of every Airflow component whose ``AIRFLOW_HOME`` is ``airflow_home``.

    A root is a matching process whose parent does not match the same component (so the
    api-server's uvicorn workers and the scheduler's runners belong to their parent). The
    ``standalone`` supervisor itself is not a component (its children are). The api-server
    overwrites its environment with its title (``airflow api_server -- host:H port:P``): it
    matches when that title names ``api_port``, else by the AIRFLOW_HOME of a child or parent.
    """
    home = str(Path(airflow_home).expanduser().resolve())
    me = user if user is not None else psutil.Process().username()
    candidates: dict[int, tuple[str, int, str | None]] = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "username"]):
        info = proc.info
        if info.get("username") != me or not info.get("cmdline"):
            continue
        name = component_of(info["cmdline"])
        if name is None:
            continue
        candidates[info["pid"]] = (name, info["ppid"], _airflow_home(proc))
    matches: dict[int, str] = {}
    for pid, (name, ppid, env_home) in candidates.items():
        if name == "standalone":
            continue
        if env_home is None and api_port is not None and name == "api-server":
            title = " ".join(_cmdline(pid))
            if f"port:{api_port}" in title.split():
                env_home = home
        if env_home is None:
            env_home = _home_of_relatives(pid, ppid)
        if env_home == home:
            matches[pid] = name
    roots: dict[str, int] = {}
    for pid, name in sorted(matches.items()):
        ppid = candidates[pid][1]
        if matches.get(ppid) == name:
            continue
        key = name if name not in roots else f"{name}-{pid}"
        roots[key] = pid
    return roots


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _home_of_relatives(pid: int, ppid: int) -> str | None:
    """AIRFLOW_HOME of the first child that has one (uvicorn workers), else of the parent."""
    proc = _process(pid)
    if proc is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in proc.children():
                home = _airflow_home(child)
                if home is not None:
                    return home
    return _airflow_home(_process(ppid))


def _airflow_home(proc: psutil.Process | None) -> str | None:
    if proc is None:
        return None
    try:
        value = proc.environ().get("AIRFLOW_HOME")
    except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
        return None
    return str(Path(value).expanduser().resolve()) if value else None


def postgres_postmaster(engine: Engine) -> int | None:
    """The postmaster pid of the database ``engine`` talks to, when it runs on this machine."""
    from sqlalchemy import text

    with engine.connect() as conn:
        backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    try:
        parent = psutil.Process(backend).parent()
    except psutil.NoSuchProcess:
        return None  # a server on another machine (or in a container): not measurable here
    return parent.pid if parent is not None else None


class CpuProbe:
    """Samples the CPU seconds of a fixed set of component trees."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self.roots: dict[str, psutil.Process] = {}
        for name, pid in roots.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.roots[name] = psutil.Process(pid)

    def sample(self) -> dict[str, float]:
        """``name`` -> CPU seconds of the tree, ``name:own`` -> of its root process alone and
        ``name:reaped`` -> of the processes its descendants reaped."""
        sample: dict[str, float] = {}
        for name, proc in self.roots.items():
            times = tree_seconds(proc)
            sample[name] = times.seconds
            sample[f"{name}{OWN_SUFFIX}"] = times.own_seconds
            sample[f"{name}{REAPED_SUFFIX}"] = times.reaped_seconds
        return sample


def cpu_per_run(
    before: Mapping[str, float], after: Mapping[str, float], runs: int, wall_seconds: float
) -> dict[str, Any]:
    """Per-component CPU seconds, CPU-s per run and cores used between two samples.

    Components missing from either sample are left out. ``runs`` < 1 gives no per-run figures.
    A ``NAME:own`` entry (the root process alone) becomes ``own_seconds`` / ``own_per_run`` of
    component NAME, a ``NAME:reaped`` entry (processes its descendants reaped)
    ``reaped_seconds`` / ``reaped_per_run``; neither is added to the total.
    """
    if wall_seconds <= 0:
        raise ValueError(f"wall_seconds must be > 0, got {wall_seconds}")

    def used(name: str) -> float | None:
        if name not in before or name not in after:
            return None
        return max(0.0, after[name] - before[name])

    rows = []
    for name in before:
        seconds = used(name)
        if name.endswith((OWN_SUFFIX, REAPED_SUFFIX)) or seconds is None:
            continue
        row: dict[str, Any] = {
            "component": name,
            "cpu_seconds": seconds,
            "per_run": seconds / runs if runs > 0 else None,
            "cores": seconds / wall_seconds,
        }
        for suffix, key in ((OWN_SUFFIX, "own"), (REAPED_SUFFIX, "reaped")):
            part = used(f"{name}{suffix}")
            if part is not None:
                row[f"{key}_seconds"] = part
                row[f"{key}_per_run"] = part / runs if runs > 0 else None
        rows.append(row)
    rows.sort(key=lambda r: r["cpu_seconds"], reverse=True)
    total = sum(r["cpu_seconds"] for r in rows)
    for row in rows:
        row["share"] = row["cpu_seconds"] / total if total > 0 else None
    return {
        "runs": runs,
        "wall_seconds": wall_seconds,
        "components": rows,
        "total": {
            "cpu_seconds": total,
            "per_run": total / runs if runs > 0 else None,
            "cores": total / wall_seconds,
        },
    }


def cpu_table(report: Mapping[str, Any]) -> str:
    """A plain-text table of one :func:`cpu_per_run` report."""
    lines = [
        f"CPU over {report['wall_seconds']:.1f} s and {report['runs']} runs:",
        f"{'component':<16} {'CPU-s':>9} {'CPU-s/run':>10} {'cores':>6} {'share':>6} {'root-only/run':>14}"
        f" {'reaped/run':>11}",
    ]

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    def fmt(row: Mapping[str, Any], name: str) -> str:
        share = row.get("share")
        share_txt = "" if share is None else f"{share:.0%}"
        own = num(row["own_per_run"]) if "own_per_run" in row else ""
        reaped = num(row["reaped_per_run"]) if "reaped_per_run" in row else ""
        return (
            f"{name:<16} {row['cpu_seconds']:>9.2f} {num(row['per_run']):>10} {row['cores']:>6.2f} "
            f"{share_txt:>6} {own:>14} {reaped:>11}"
        )

    for row in report["components"]:
        lines.append(fmt(row, row["component"]))
    lines.append(fmt({**report["total"], "share": None}, "total"))
    return "\n".join(lines) + "\n"


def describe(roots: Iterable[str]) -> str:
    return ", ".join(sorted(roots)) or "none"
