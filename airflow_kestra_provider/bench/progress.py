"""Progress of one bench step on stderr: a rich progress bar on a terminal (description, bar,
done/total, elapsed time and time remaining), a plain line every few seconds otherwise (CI logs)."""

from __future__ import annotations

import atexit
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

WIDTH = 30
UNKNOWN_TIME = "-:--:--"


def clock(seconds: float | None) -> str:
    """``H:MM:SS``, as rich's time columns write it; ``-:--:--`` when unknown."""
    if seconds is None:
        return UNKNOWN_TIME
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class ProgressBar:
    """``update(done, total, detail)`` as work goes on, ``close(final)`` once at the end.

    On a terminal (or a ``console`` that is one) a rich :class:`~rich.progress.Progress` is drawn
    in place and removed on close, leaving the ``final`` line; anything printed to stderr meanwhile
    appears above it. Elsewhere a line ``LABEL [###...] DONE/TOTAL DETAIL; elapsed
    H:MM:SS, ETA H:MM:SS`` is written at the first update and then at most every ``line_every``
    seconds. ``quiet`` writes nothing. The time remaining is rich's estimate from the recent rate
    of progress.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        quiet: bool = False,
        line_every: float = 5.0,
        console: Console | None = None,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else (console.file if console is not None else sys.stderr)
        self.quiet = quiet
        self.line_every = line_every
        if console is not None:
            self._tty = console.is_terminal and not console.is_dumb_terminal
        else:
            self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
            console = Console(file=self.stream, force_terminal=self._tty)
        self.console = console
        self._last_line: float | None = None
        self._live = False
        self._closed = False
        self._progress: Progress | None = None
        self._task = TaskID(0)
        if quiet:
            return
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            refresh_per_second=4,
            redirect_stdout=False,  # results on stdout stay there; stderr lines print above the bar
        )
        self._task = self._progress.add_task(label, total=None, detail="")

    @staticmethod
    def bar(done: int, total: int, width: int = WIDTH) -> str:
        filled = 0 if total <= 0 else max(0, min(width, round(width * done / total)))
        return "[" + "#" * filled + "." * (width - filled) + "]"

    def update(self, done: int, total: int, detail: str = "") -> None:
        if self._progress is None or self._closed:
            return
        self._progress.update(self._task, completed=done, total=total, detail=detail)
        if self._tty:
            if not self._live:
                self._progress.start()
                atexit.register(self._stop)
                self._live = True
            return
        now = self.console.get_time()
        if self._last_line is None or now - self._last_line >= self.line_every:
            self.stream.write(self.line(done, total, detail) + "\n")
            self.stream.flush()
            self._last_line = now

    def line(self, done: int, total: int, detail: str = "") -> str:
        """The plain line written when the stream is not a terminal."""
        elapsed: float | None = None
        remaining: float | None = None
        if self._progress is not None:
            task = self._progress.tasks[0]
            elapsed, remaining = task.elapsed, task.time_remaining
        text = f"{self.label} {self.bar(done, total)} {done}/{total} {detail}".rstrip()
        return f"{text}; elapsed {clock(elapsed)}, ETA {clock(remaining)}"

    def _stop(self) -> None:
        if self._live and self._progress is not None:
            self._live = False
            self._progress.stop()
            atexit.unregister(self._stop)

    def close(self, final: str = "") -> None:
        if self._progress is None or self._closed:
            return
        self._closed = True
        self._stop()
        if final:
            self.stream.write(f"{self.label} {final}\n")
        self.stream.flush()
