"""A one-line progress bar on stderr (redrawn in place on a terminal, a line every few seconds otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    def __init__(
        self, label: str, stream: TextIO | None = None, quiet: bool = False, line_every: float = 5.0
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.line_every = line_every
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = 0.0
        self._drawn = False

    @staticmethod
    def bar(done: int, total: int, width: int = WIDTH) -> str:
        filled = 0 if total <= 0 else min(width, round(width * done / total))
        return "[" + "#" * filled + "." * (width - filled) + "]"

    def update(self, done: int, total: int, detail: str = "") -> None:
        if self.quiet:
            return
        text = f"{self.label} {self.bar(done, total)} {done}/{total} {detail}".rstrip()
        if self._tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if now - self._last_line >= self.line_every:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_line = now

    def close(self, final: str = "") -> None:
        if self.quiet:
            return
        if self._tty and self._drawn:
            self.stream.write("\r\033[K")
        if final:
            self.stream.write(f"{self.label} {final}\n")
        self.stream.flush()
