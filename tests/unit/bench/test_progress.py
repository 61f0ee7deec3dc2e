"""The progress of a bench step: rich on a terminal, a plain line every few seconds elsewhere."""

from __future__ import annotations

import io
import re
import sys

from rich.console import Console

from airflow_kestra_provider.bench.progress import ProgressBar, clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _plain(clock_: FakeClock, line_every: float = 5.0) -> tuple[ProgressBar, io.StringIO]:
    stream = io.StringIO()  # not a terminal
    console = Console(file=stream, get_time=clock_)
    return ProgressBar("  kestra 5/s", quiet=False, line_every=line_every, console=console), stream


def test_clock():
    assert clock(None) == "-:--:--"
    assert clock(5.9) == "0:00:05"
    assert clock(3725) == "1:02:05"


def test_plain_lines_with_elapsed_and_eta():
    now = FakeClock()
    bar, stream = _plain(now)
    now.now += 2
    bar.update(2, 10, "sent, 0 finished")  # the first update is written at once
    now.now += 2
    bar.update(4, 10, "sent, 1 finished")  # within line_every: not written
    now.now += 4
    bar.update(8, 10, "sent, 5 finished")
    bar.close("done: 10/10 measured runs finished")
    assert stream.getvalue().splitlines() == [
        "  kestra 5/s [######........................] 2/10 sent, 0 finished; elapsed 0:00:02, ETA -:--:--",
        "  kestra 5/s [########################......] 8/10 sent, 5 finished; elapsed 0:00:08, ETA 0:00:02",
        "  kestra 5/s done: 10/10 measured runs finished",
    ]


def test_plain_line_without_detail():
    bar, stream = _plain(FakeClock(), line_every=0)
    bar.update(0, 0)
    assert (
        stream.getvalue()
        == "  kestra 5/s [..............................] 0/0; elapsed 0:00:00, ETA 0:00:00\n"
    )


def test_a_stream_that_is_not_a_terminal_gets_plain_lines():
    stream = io.StringIO()
    bar = ProgressBar("3 runs/s", stream=stream)
    bar.update(1, 3, "sent")
    bar.close("done")
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"3 runs/s \[#{10}\.{20}\] 1/3 sent; elapsed 0:00:00, ETA -:--:--", lines[0])
    assert lines[1:] == ["3 runs/s done"]


def test_quiet_writes_nothing():
    stream = io.StringIO()
    bar = ProgressBar("x", stream=stream, quiet=True, line_every=0)
    bar.update(1, 2, "sent")
    bar.close("done")
    assert stream.getvalue() == ""


def test_terminal_renders_through_rich():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120)
    stderr = sys.stderr
    bar = ProgressBar("  stock 2/s", console=console)
    bar.update(3, 10, "sent, 1 finished")
    assert sys.stderr is not stderr  # stderr prints above the bar while it is drawn
    bar.update(5, 10, "sent, 4 finished")
    bar.close("done: 10/10 measured runs finished")
    assert sys.stderr is stderr
    out = stream.getvalue()
    assert "\x1b[" in out  # drawn in place with control sequences, not as lines
    assert "stock 2/s" in out
    assert "5/10" in out
    assert "sent, 4 finished" in out
    assert re.search(r"elapsed.*\d:\d\d:\d\d.*ETA", out)
    assert out.endswith("  stock 2/s done: 10/10 measured runs finished\n")
    bar.close("again")  # closing twice writes nothing more
    assert stream.getvalue() == out
