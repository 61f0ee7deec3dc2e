"""Run the components of a stack as supervised subprocesses, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil


@dataclass
class Component:
    """One long-running Airflow process (api-server, scheduler, ...)."""

    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def airflow_argv(*args: str) -> list[str]:
    """Command line that runs ``airflow ARGS`` with this interpreter."""
    return [sys.executable, "-m", "airflow", *args]


# A component may be started again this many times within this many seconds (a service manager's
# start limit); one more exit within the window means it keeps failing.
MAX_RESTARTS = 5
RESTART_WINDOW = 300.0


class RestartLimitExceeded(RuntimeError):
    """A component exited again after ``max_restarts`` restarts within ``restart_window`` seconds."""


class Supervisor:
    """Starts components, restarts those that exited (within a limit), reports which died, and
    stops them all with their children."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        max_restarts: int = MAX_RESTARTS,
        restart_window: float = RESTART_WINDOW,
    ) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.components: list[Component] = []
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self._restarts: dict[str, list[float]] = {}

    def start(self, name: str, argv: Sequence[str]) -> Component:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        process = subprocess.Popen(
            list(argv),
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        component = Component(name, list(argv), process, log_file)
        self.components.append(component)
        return component

    def restart(self, name: str) -> Component:
        """Start the exited component ``name`` again with the same command line (its log goes on).

        Raises RestartLimitExceeded, and leaves it stopped, when ``name`` was already restarted
        ``max_restarts`` times within the last ``restart_window`` seconds.
        """
        old = next(c for c in self.components if c.name == name)
        if old.alive():
            raise RuntimeError(f"{name} is still running")
        now = time.monotonic()
        recent = [t for t in self._restarts.get(name, []) if now - t < self.restart_window]
        if len(recent) >= self.max_restarts:
            raise RestartLimitExceeded(
                f"{name} exited {len(recent) + 1} times within {self.restart_window:.0f}s; last lines of "
                f"its log:\n{self.log_tail(name)}"
            )
        self._restarts[name] = [*recent, now]
        if old.process is not None:
            _signal_group(old.process.pid, signal.SIGKILL)  # children it may have left behind
        self.components.remove(old)
        if old.log_file is not None:
            old.log_file.close()
        return self.start(name, old.argv)

    def dead(self) -> list[Component]:
        return [c for c in self.components if not c.alive()]

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self, timeout: float = 30.0, names: Collection[str] | None = None) -> None:
        """SIGTERM every component's process group (or only those of ``names``), wait, then SIGKILL
        what is left."""
        chosen = [c for c in self.components if names is None or c.name in names]
        self.components = [c for c in self.components if c not in chosen]
        _stop(chosen, timeout)


def _stop(components: Sequence[Component], timeout: float) -> None:
    members: list[psutil.Process] = []
    for component in components:
        if component.process is None:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(component.process.pid)
            members.extend([root, *root.children(recursive=True)])
        _signal_group(component.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for component in components:
        if component.process is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.process.wait(max(0.1, deadline - time.monotonic()))
    _, alive = psutil.wait_procs(members, timeout=max(0.1, deadline - time.monotonic()))
    for component in components:
        if component.process is not None:
            _signal_group(component.process.pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    for component in components:
        if component.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(5)
        if component.log_file is not None:
            component.log_file.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_airflow(env: Mapping[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a short ``airflow`` command to completion; raise with its output if it fails."""
    result = subprocess.run(
        airflow_argv(*args), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`airflow {' '.join(args)}` exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result
