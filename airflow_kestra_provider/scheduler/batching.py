"""Take due items in batches until none is left or the loop's time budget is spent.

Pure: the caller supplies ``take(limit)`` (one locking query, oldest due first) and
``process(batch)`` (create the runs and commit, which releases the locks). An item seen earlier
in the same pass (a catch-up DAG with further due intervals, or one whose run could not be
created) is not processed twice in one pass, which also guarantees the pass ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass
class BatchPass:
    batches: int = 0
    processed: int = 0
    out_of_budget: bool = False


def take_in_batches(
    take: Callable[[int], Sequence[T]],
    process: Callable[[list[T]], None],
    key: Callable[[T], Hashable],
    batch_size: int,
    budget: float,
    clock: Callable[[], float] = time.monotonic,
) -> BatchPass:
    """Process batches of ``take(batch_size)`` until a short batch, a batch of only already
    processed items, or ``budget`` seconds have passed (checked after each batch, so at least
    one batch is always processed)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    deadline = clock() + budget
    seen: set[Hashable] = set()
    result = BatchPass()
    while True:
        batch = list(take(batch_size))
        fresh = [item for item in batch if key(item) not in seen]
        if fresh:
            seen.update(key(item) for item in fresh)
            process(fresh)
            result.batches += 1
            result.processed += len(fresh)
        if len(batch) < batch_size or not fresh:
            return result
        if clock() >= deadline:
            result.out_of_budget = True
            return result
