"""Kestra's step-wise idle back-off for queue pollers (pure: no clock, no config, no I/O).

The steps start at ``(max_interval, switch_interval)`` and both values are halved
``switch_steps`` times; an interval never goes under ``min_interval``. After an empty poll the
poller sleeps the interval of the step with the longest idle threshold that has passed, or
``min_interval`` while no threshold has passed yet. A poll that returned rows is followed by
another poll at once (no sleep at all), and idleness is counted from the last such poll.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """Sleep ``interval`` seconds once the poller has been idle ``idle_after`` seconds or more."""

    idle_after: float
    interval: float


def compute_steps(
    min_interval: float, max_interval: float, switch_interval: float, switch_steps: int
) -> tuple[Step, ...]:
    """The back-off steps, longest idle threshold first."""
    if min_interval <= 0 or max_interval < min_interval:
        raise ValueError("need 0 < min_interval <= max_interval")
    steps = []
    interval, threshold = max_interval, switch_interval
    for _ in range(switch_steps + 1):
        steps.append(Step(threshold, max(interval, min_interval)))
        interval, threshold = interval / 2, threshold / 2
    return tuple(steps)


def idle_sleep(steps: tuple[Step, ...], idle_for: float, min_interval: float) -> float:
    """Seconds to sleep after an empty poll when the queue has been empty for ``idle_for`` s."""
    for step in steps:  # longest threshold first
        if idle_for >= step.idle_after:
            return step.interval
    return min_interval


class Backoff:
    """Back-off state of one poller; the caller passes the monotonic clock in."""

    def __init__(
        self, min_interval: float, max_interval: float, switch_interval: float, switch_steps: int
    ) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.steps = compute_steps(min_interval, max_interval, switch_interval, switch_steps)
        self._busy_at: float | None = None

    def busy(self, now: float) -> None:
        """A poll returned rows (or the poller was woken with work): idleness starts over."""
        self._busy_at = now

    def idle_interval(self, now: float, notified: bool = False) -> float:
        """Sleep after an empty poll at ``now``. ``notified``: a notification wakes the poller
        for every change it acts on, so the poll only catches what a lost one missed and the
        sleep is the maximum interval at once."""
        if self._busy_at is None:
            self._busy_at = now
        interval = idle_sleep(self.steps, now - self._busy_at, self.min_interval)
        return max(interval, self.max_interval) if notified else interval

    def error_interval(self) -> float:
        """Sleep after a failed poll: the maximum interval."""
        return self.max_interval
