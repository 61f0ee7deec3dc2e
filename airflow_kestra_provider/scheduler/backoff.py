"""Step-wise idle back-off (Kestra's min / max / switch / steps), pure and clock-free.

The ladder starts at (``max_interval``, ``switch_interval``) and halves both ``steps`` times,
never going under ``min_interval``. After an idle loop the caller sleeps the interval of the
longest step whose idle threshold has passed; any loop that did work resets the idle clock.
With Kestra's defaults (25 ms, 500 ms, 60 s, 5 steps) that is 25 ms for the first 3.75 s of
idleness and 500 ms after 60 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """Once idle for at least ``idle_after`` seconds, sleep ``interval`` seconds."""

    idle_after: float
    interval: float


def build_steps(min_interval: float, max_interval: float, switch_interval: float, steps: int) -> list[Step]:
    """The ladder, shortest idle threshold first. The first step always starts at 0 s idle."""
    if min_interval <= 0 or max_interval < min_interval or switch_interval < 0 or steps < 0:
        raise ValueError(
            f"invalid back-off: min={min_interval} max={max_interval} switch={switch_interval} steps={steps}"
        )
    ladder = [Step(switch_interval, max_interval)]
    interval, threshold = max_interval, switch_interval
    for _ in range(steps):
        interval, threshold = max(interval / 2, min_interval), threshold / 2
        ladder.append(Step(threshold, interval))
    ladder.reverse()
    # Below the smallest threshold the poller sleeps the minimum.
    return [Step(0.0, min_interval), *ladder]


@dataclass
class StepBackoff:
    """Tracks how long the loop has been idle and says how long to sleep after an idle loop."""

    min_interval: float = 0.025
    max_interval: float = 0.5
    switch_interval: float = 60.0
    steps: int = 5
    ladder: list[Step] = field(init=False)
    _idle_since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.ladder = build_steps(self.min_interval, self.max_interval, self.switch_interval, self.steps)

    def busy(self) -> None:
        """A loop did work: the next idle loop starts counting idleness from zero."""
        self._idle_since = None

    def failed(self, now: float) -> float:
        """A loop failed (e.g. a database error): back off to the maximum."""
        self._idle_since = now - self.switch_interval
        return self.max_interval

    def idle(self, now: float) -> float:
        """A loop did nothing: return the seconds to sleep before the next loop."""
        if self._idle_since is None:
            self._idle_since = now
        return self.interval_after(now - self._idle_since)

    def interval_after(self, idle_for: float) -> float:
        """Interval of the longest step whose idle threshold ``idle_for`` has reached."""
        chosen = self.ladder[0].interval
        for step in self.ladder:
            if idle_for >= step.idle_after:
                chosen = step.interval
            else:
                break
        return chosen
