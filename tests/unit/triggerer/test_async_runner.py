"""The trigger runner's wait: ends on an event or a wake-up signal, else after the idle wait."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from airflow_kestra_provider.triggerer import async_runner
from airflow_kestra_provider.triggerer.async_runner import WAKE_SIGNAL, KestraTriggerRunner, WakingDeque


def test_the_waking_deque_calls_back_after_each_append():
    calls = []
    events = WakingDeque(lambda: calls.append(len(events)))
    events.append("a")
    events.append("b")
    assert list(events) == ["a", "b"]
    assert calls == [1, 2]
    assert events.popleft() == "a"


def test_the_runner_sends_events_through_a_waking_deque():
    runner = KestraTriggerRunner()
    assert isinstance(runner.events, WakingDeque)


class _StopEvent:
    def __init__(self) -> None:
        self.set_calls = 0

    def is_set(self) -> bool:
        return self.set_calls > 0

    def set(self) -> None:
        self.set_calls += 1


async def _timed_wait(runner: KestraTriggerRunner) -> float:
    started = time.monotonic()
    await runner.cancel_triggers()
    return time.monotonic() - started


def _runner(monkeypatch: pytest.MonkeyPatch, idle_wait: float) -> KestraTriggerRunner:
    monkeypatch.setattr(async_runner, "IDLE_WAIT", idle_wait)
    runner = KestraTriggerRunner()
    runner._stop_event = _StopEvent()  # type: ignore[assignment]
    return runner


def test_the_wait_lasts_the_idle_wait_and_turns_the_stock_wait_off(monkeypatch):
    runner = _runner(monkeypatch, 0.2)

    async def scenario() -> float:
        runner._wake = asyncio.Event()
        return await _timed_wait(runner)

    waited = asyncio.run(scenario())
    assert 0.15 < waited < 1.0
    assert runner._stop_event.is_set()  # the stock 1 s wait after cancel_triggers returns at once
    assert runner.wakeups == 0


def test_an_event_ends_the_wait_at_once(monkeypatch):
    runner = _runner(monkeypatch, 5.0)

    async def scenario() -> float:
        runner._wake = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, runner.events.append, "event")
        return await _timed_wait(runner)

    assert asyncio.run(scenario()) < 1.0
    assert runner.wakeups == 1


def test_the_wake_signal_ends_the_wait_at_once(monkeypatch):
    runner = _runner(monkeypatch, 5.0)

    async def scenario() -> float:
        runner._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(WAKE_SIGNAL, runner.wake)
        try:
            loop.call_later(0.05, os.kill, os.getpid(), WAKE_SIGNAL)
            return await _timed_wait(runner)
        finally:
            loop.remove_signal_handler(WAKE_SIGNAL)

    assert asyncio.run(scenario()) < 1.0
    assert runner.wakeups == 1


def test_no_wait_once_stopping(monkeypatch):
    runner = _runner(monkeypatch, 5.0)
    runner.stop = True

    async def scenario() -> float:
        runner._wake = asyncio.Event()
        return await _timed_wait(runner)

    assert asyncio.run(scenario()) < 1.0


def test_cleanup_walks_the_triggers_only_when_one_is_done():
    runner = KestraTriggerRunner()

    async def scenario() -> tuple[list[int], list[int]]:
        pending = asyncio.get_running_loop().create_future()
        done = asyncio.get_running_loop().create_future()
        runner.triggers = {1: {"task": pending, "name": "waiting", "events": 0, "is_watcher": False}}  # type: ignore[typeddict-item]
        none_done = await runner.cleanup_finished_triggers()
        done.set_result(None)
        runner.triggers[2] = {"task": done, "name": "fired", "events": 1, "is_watcher": False}  # type: ignore[typeddict-item]
        one_done = await runner.cleanup_finished_triggers()
        pending.cancel()
        return none_done, one_done

    none_done, one_done = asyncio.run(scenario())
    assert none_done == []
    assert one_done == [2]
    assert list(runner.triggers) == [1]
