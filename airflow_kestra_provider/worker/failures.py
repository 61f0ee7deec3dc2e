"""Log a retrying loop's failures without flooding the log during an outage.

A database outage makes every worker loop fail every ``max_poll_interval`` (0.5 s by default);
a full traceback each time buries everything else. :class:`FailureLog` writes the first failure
of a streak with its traceback, then at most one line per ``quiet`` seconds, and one line when
the loop works again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable


def one_line(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


class FailureLog:
    """Failure streak of one loop (``what`` names it in every line)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        quiet: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.quiet = quiet
        self.clock = clock
        self.failures = 0
        self._since = 0.0
        self._last_line = 0.0

    def failed(self, retry_in: float) -> None:
        """Call from an ``except`` block, before sleeping ``retry_in`` seconds."""
        now = self.clock()
        self.failures += 1
        if self.failures == 1:
            self._since = self._last_line = now
            self.logger.exception("%s failed; retrying in %.2fs", self.what, retry_in, stacklevel=2)
            return
        if now - self._last_line >= self.quiet:
            self._last_line = now
            self.logger.error(
                "%s still failing (%d failures in %.0fs, retrying every %.2fs): %s",
                self.what,
                self.failures,
                now - self._since,
                retry_in,
                one_line(sys.exc_info()[1]),
                stacklevel=2,
            )

    def succeeded(self) -> None:
        """Call after an iteration that worked; ends a streak with one line."""
        if not self.failures:
            return
        self.logger.warning(
            "%s works again after %d failure(s) in %.1fs",
            self.what,
            self.failures,
            self.clock() - self._since,
            stacklevel=2,
        )
        self.failures = 0
