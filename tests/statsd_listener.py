"""A UDP StatsD server for tests: collects what a StatsD client sends to ``127.0.0.1:<port>``.

Usage::

    with StatsdListener() as statsd:
        ...  # point [metrics] statsd_host / statsd_port at 127.0.0.1 / statsd.port
        assert statsd.wait_for("airflow.kestra.worker.polls")
        statsd.received("airflow.kestra.worker.polls")  # [1.0, 1.0, ...]

Each datagram may hold several ``name:value|type[|@rate][|#tag:value,...]`` lines (the StatsD
and DogStatsD formats); InfluxDB-style tags in the name (``name,tag=value:1|c``) are split off
the name too. Names are kept as sent (with the client's prefix).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    type: str  # c (counter), g (gauge), ms (timer), h, s, d
    tags: dict[str, str] = field(default_factory=dict)
    rate: float | None = None
    sign: str = ""  # "+" or "-" for a gauge delta ("g" with a signed value), else ""


def parse_line(line: str) -> Metric | None:
    """One StatsD line, or None when it is not one."""
    name_value, _, rest = line.partition("|")
    name, sep, raw_value = name_value.rpartition(":")
    if not sep or not rest:
        return None
    parts = rest.split("|")
    kind = parts[0]
    rate = None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        if part.startswith("@"):
            rate = float(part[1:])
        elif part.startswith("#"):
            for tag in filter(None, part[1:].split(",")):
                key, _, value = tag.partition(":")
                tags[key] = value
    if "," in name:  # InfluxDB line-protocol tags: name,key=value,key=value
        name, *pairs = name.split(",")
        for pair in pairs:
            key, _, value = pair.partition("=")
            tags[key] = value
    sign = raw_value[0] if kind == "g" and raw_value.startswith(("+", "-")) else ""
    try:
        value = float(raw_value)
    except ValueError:
        return None
    return Metric(name, value, kind, tags, rate, sign)


class StatsdListener:
    """Binds ``host:0`` (``.port`` is the port it got) and collects metrics in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.metrics: list[Metric] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="statsd-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            parsed = [m for m in map(parse_line, data.decode("utf-8", "replace").splitlines()) if m]
            with self._arrived:
                self.metrics.extend(parsed)
                self._arrived.notify_all()

    # -- reading ------------------------------------------------------------------------------
    def all(self, name: str | None = None, tags: dict[str, str] | None = None) -> list[Metric]:
        """Every metric received (named ``name``, carrying ``tags``), in arrival order."""
        with self._lock:
            return [
                m
                for m in self.metrics
                if (name is None or m.name == name) and (not tags or tags.items() <= m.tags.items())
            ]

    def received(self, name: str, tags: dict[str, str] | None = None) -> list[float]:
        """The values received for ``name`` (with ``tags`` among its tags), in arrival order."""
        return [m.value for m in self.all(name, tags)]

    def names(self) -> set[str]:
        with self._lock:
            return {m.name for m in self.metrics}

    def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``count`` metrics named ``name`` have arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while sum(1 for m in self.metrics if m.name == name) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    def clear(self) -> None:
        with self._lock:
            self.metrics.clear()

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self) -> StatsdListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
