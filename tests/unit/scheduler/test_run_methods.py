"""``run_methods.replaced``: a method replaced on some objects for one block, then stock again."""

from __future__ import annotations

import pytest

from airflow_kestra_provider.scheduler.run_methods import replaced


class Run:
    def __init__(self, name: str) -> None:
        self.name = name

    def read(self) -> str:
        return f"stock {self.name}"


def test_only_the_runs_given_a_replacement_answer_with_it_until_the_block_ends():
    a, b = Run("a"), Run("b")

    def make(run: Run):
        if run.name != "a":
            return None

        def read() -> str:
            run.__dict__["_noted"] = True
            return "replaced"

        return read

    with replaced([a, b], "read", make, also_clear=("_noted",)):  # type: ignore[arg-type]
        assert (a.read(), b.read()) == ("replaced", "stock b")
        assert a.__dict__["_noted"] is True
    assert (a.read(), b.read()) == ("stock a", "stock b")
    assert "_noted" not in a.__dict__ and "read" not in a.__dict__


def test_the_stock_method_is_back_when_the_block_raises():
    run = Run("a")
    with pytest.raises(RuntimeError), replaced([run], "read", lambda r: lambda: "replaced"):  # type: ignore[arg-type]
        assert run.read() == "replaced"
        raise RuntimeError("examination failed")
    assert run.read() == "stock a"
