"""A TCP proxy on 127.0.0.1 that adds a fixed round-trip delay to every connection through it.

``bench claims`` uses it to show what a worker on another host pays per poll: PostgreSQL stays on
this machine, the pollers connect through the proxy, and every chunk of bytes is held for half the
delay in each direction before it is passed on, in order, without holding back the chunks behind it
(a pipelined stream keeps its throughput; a request/response pair pays the whole delay). This is
what ``tc netem`` does to a link; kernels without the ``sch_netem`` module (virtual machines with a
minimal kernel) cannot add it, and the proxy needs nothing but loopback.

The proxy runs in a process of its own (:class:`DelayProxy`), two threads per direction of each
connection, so it competes with the pollers for CPU as a network stack would, not for their
interpreter lock.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

CHUNK = 65536


@dataclass(frozen=True)
class Upstream:
    """Where the proxy connects: a TCP address or a unix socket path."""

    host: str | None = None
    port: int | None = None
    unix_path: str | None = None

    def connect(self) -> socket.socket:
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.unix_path)
            return sock
        assert self.host is not None and self.port is not None
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _pipe(source: socket.socket, target: socket.socket, one_way: float) -> None:
    """Copy ``source`` to ``target``, each chunk ``one_way`` seconds after it arrived: a reader
    thread stamps the chunks, this thread holds each until its time (``time.sleep`` wakes within
    microseconds; an event loop's timers round up to milliseconds) and sends it."""
    held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            held.put((time.monotonic() + one_way, data))
            if not data:
                return

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            due, data = held.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _connection(client: socket.socket, upstream: Upstream, one_way: float) -> None:
    try:
        server = upstream.connect()
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pipe, args=(server, client, one_way), daemon=True)
    back.start()
    _pipe(client, server, one_way)
    back.join()
    client.close()
    server.close()


def _main(listener: socket.socket, upstream: Upstream, delay: float, ready: Connection) -> None:
    ready.send(True)
    ready.close()
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_connection, args=(client, upstream, delay / 2), daemon=True).start()


class DelayProxy:
    """``with DelayProxy(upstream, delay) as port:`` a proxy process on ``127.0.0.1:port`` adding
    ``delay`` seconds of round trip; stopped at exit."""

    def __init__(self, upstream: Upstream, delay: float) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.upstream = upstream
        self.delay = delay
        self._process: Any = None

    def __enter__(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = int(listener.getsockname()[1])
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_main, args=(listener, self.upstream, self.delay, child), daemon=True
        )
        self._process.start()
        listener.close()
        child.close()
        if not parent.poll(30) or not parent.recv():
            self.__exit__()
            raise RuntimeError("the delay proxy did not start")
        return port

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)
            self._process = None
