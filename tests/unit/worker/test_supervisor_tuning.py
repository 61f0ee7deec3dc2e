"""The supervisor and task-runner names ``worker/supervisor_tuning.py`` relies on, and what it does.

If one of the contract tests fails after an Airflow upgrade, read the new source of the named
function: drop the change when Airflow made it unnecessary, else port it."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import attrs
from airflow.sdk.execution_time import comms, supervisor, task_runner
from pydantic import TypeAdapter

from airflow_kestra_provider.worker.supervisor_tuning import adapter_factory


def test_contract_the_first_heartbeat_is_due_at_once_after_the_start():
    fields = {f.name: f for f in attrs.fields(supervisor.ActivitySubprocess)}
    assert fields["_last_heartbeat_attempt"].default == 0
    assert "_last_heartbeat_attempt" in inspect.getsource(
        supervisor.ActivitySubprocess._send_heartbeat_if_needed
    )
    started = inspect.getsource(supervisor.ActivitySubprocess._on_child_started)
    assert "task_instances.start(" in started


def test_contract_the_modules_look_the_adapter_up_when_they_build_one():
    decoder_fields = {f.name: f for f in attrs.fields(comms.CommsDecoder)}
    for name in ("body_decoder", "err_decoder"):
        factory = decoder_fields[name].default.factory
        assert "TypeAdapter(ToTask)" in inspect.getsource(factory)
    assert comms.TypeAdapter is TypeAdapter
    assert task_runner.TypeAdapter is TypeAdapter
    source = inspect.getsource(task_runner)
    assert "TypeAdapter(StartupDetails)" in source
    assert "TypeAdapter(JsonValue)" in source


def test_the_factory_reuses_known_types_and_builds_others():
    built = TypeAdapter(int)
    factory = adapter_factory(TypeAdapter, {id(int): (int, built)})
    assert factory(int) is built
    assert factory(int, config={"strict": True}) is not built  # options: a new one, as asked
    other = factory(list[str])
    assert other.validate_python(["a"]) == ["a"]
    assert factory(list[str]) is not other


def test_apply_in_a_fresh_process():
    code = textwrap.dedent(
        """
        import time
        from airflow_kestra_provider.worker import supervisor_tuning
        supervisor_tuning.apply()
        supervisor_tuning.apply()
        from airflow.sdk.execution_time import comms, supervisor, task_runner
        from pydantic import JsonValue
        assert comms.TypeAdapter(comms.ToTask) is comms.TypeAdapter(comms.ToTask)
        assert task_runner.TypeAdapter(JsonValue) is task_runner.TypeAdapter(JsonValue)
        assert task_runner.TypeAdapter(JsonValue).validate_python({"a": [1]}) == {"a": [1]}
        wrapped = supervisor.ActivitySubprocess._on_child_started
        assert wrapped.__wrapped__.__name__ == "_on_child_started"  # wrapped once, not twice

        class Fake:
            _last_heartbeat_attempt = 0

        calls = []
        patched = supervisor_tuning._first_heartbeat_after_start(lambda self, **kw: calls.append(kw))
        fake = Fake()
        before = time.monotonic()
        patched(fake, ti="x")
        assert calls == [{"ti": "x"}]
        assert fake._last_heartbeat_attempt >= before
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
