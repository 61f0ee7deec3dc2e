"""A DagRun method replaced on some runs for the length of a block.

The examination of a batch of runs changes how each run answers one stock method (its task
instances read for the whole batch, what it hands to ``schedule_tis`` noted) without touching the
class: the replacement is an instance attribute, which Python finds before the class's method,
and which is removed when the block ends, leaving every run with the stock method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun


@contextmanager
def replaced(
    runs: Iterable[DagRun],
    attribute: str,
    make: Callable[[DagRun], Callable[..., Any] | None],
    also_clear: Iterable[str] = (),
) -> Iterator[None]:
    """Within the block, each run for which ``make(run)`` returns a function answers ``attribute``
    with it; on exit that attribute, and those named in ``also_clear`` (what the replacements
    noted on the run), are removed from every run's ``__dict__``."""
    touched = list(runs)
    for run in touched:
        if (method := make(run)) is not None:
            setattr(run, attribute, method)
    try:
        yield
    finally:
        for run in touched:
            for name in (attribute, *also_clear):
                run.__dict__.pop(name, None)
