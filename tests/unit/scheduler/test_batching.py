from __future__ import annotations

import pytest

from airflow_kestra_provider.scheduler.batching import take_in_batches


class FakeDue:
    """Due items ordered by due time; processing an item makes it not due (like a created run),
    unless it is listed in ``sticky`` (a DAG whose run cannot be created stays due)."""

    def __init__(self, due: list[tuple[float, str]], sticky: frozenset[str] = frozenset()) -> None:
        self.due = sorted(due)
        self.sticky = sticky
        self.processed: list[list[str]] = []

    def take(self, limit: int) -> list[str]:
        return [name for _, name in self.due[:limit]]

    def process(self, batch: list[str]) -> None:
        self.processed.append(batch)
        self.due = [(t, n) for t, n in self.due if n not in batch or n in self.sticky]


def test_all_due_items_in_batches_oldest_first():
    due = FakeDue([(float(i), f"dag_{i:03d}") for i in reversed(range(250))])
    result = take_in_batches(due.take, due.process, str, batch_size=100, budget=60)
    assert [len(b) for b in due.processed] == [100, 100, 50]
    assert due.processed[0][0] == "dag_000"
    assert [n for b in due.processed for n in b] == sorted(f"dag_{i:03d}" for i in range(250))
    assert result.processed == 250 and not result.out_of_budget


def test_budget_stops_after_the_batch_in_progress():
    ticks = iter(range(100))
    due = FakeDue([(float(i), f"d{i}") for i in range(1000)])
    result = take_in_batches(due.take, due.process, str, batch_size=10, budget=2.5, clock=lambda: next(ticks))
    assert result.out_of_budget
    assert result.batches == 3
    assert len(due.due) == 970


def test_at_least_one_batch_even_with_no_budget_left():
    due = FakeDue([(1.0, "a"), (2.0, "b")])
    result = take_in_batches(due.take, due.process, str, batch_size=1, budget=0.0)
    assert due.processed == [["a"]]
    assert result.out_of_budget


def test_items_that_stay_due_are_not_processed_twice_and_the_pass_ends():
    due = FakeDue([(1.0, "broken"), (2.0, "ok1"), (3.0, "ok2")], sticky=frozenset({"broken"}))
    result = take_in_batches(due.take, due.process, str, batch_size=2, budget=60)
    assert [n for b in due.processed for n in b] == ["broken", "ok1", "ok2"]
    assert result.processed == 3


def test_nothing_due():
    due = FakeDue([])
    assert take_in_batches(due.take, due.process, str, batch_size=5, budget=1).batches == 0


def test_rejects_zero_batch():
    with pytest.raises(ValueError):
        take_in_batches(lambda n: [], lambda b: None, str, batch_size=0, budget=1)
