"""collector/logs.py ``Repeats``: per-event warnings counted always, logged
at most twice per source and kind a window (the first in full, then one
summary), on simulated time; the loop timer ends a window when the events
stop; the keys a caller can create are bounded; the counters are what the
control socket reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from collector import logs
from collector.logs import MAX_KEYS, OVERFLOW, Repeats


class Log:
    """A structlog stand-in that keeps every call."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.lines if e == event]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_in_full_then_one_summary_per_source_and_kind() -> None:
    log, clock = Log(), Clock()
    r = Repeats(log, "test_noise", source_field="port", clock=clock)
    for i in range(500):
        clock.now += 0.1  # 50 s of events on two ports, two kinds on port 1
        r.add("bad_crc", 1, detail=f"frame {i}")
        if i % 5 == 0:
            r.add("garbage", 1, detail="noise")
            r.add("bad_crc", 2, detail="x")
    firsts = log.events("test_noise")
    assert firsts == [
        {"kind": "bad_crc", "port": 1, "detail": "frame 0"},
        {"kind": "garbage", "port": 1, "detail": "noise"},
        {"kind": "bad_crc", "port": 2, "detail": "x"},
    ]
    assert not log.events("test_noise_repeated"), "nothing more inside the window"
    clock.now += 11  # past the window: the next event ends it first
    assert r.add("bad_crc", 1, detail="after")
    summaries = {(e["port"], e["kind"]): e["more"] for e in log.events("test_noise_repeated")}
    assert summaries == {(1, "bad_crc"): 499, (1, "garbage"): 99, (2, "bad_crc"): 99}
    assert log.events("test_noise")[-1]["detail"] == "after", "a new window: in full again"
    assert r.totals == {(1, "bad_crc"): 501, (1, "garbage"): 100, (2, "bad_crc"): 100}
    assert r.of_source(1) == {"bad_crc": 501, "garbage": 100}
    assert r.stats() == {
        "events": 701,
        "lines": len(log.lines),
        "kinds": {"bad_crc": 601, "garbage": 100},
    }
    assert len(log.lines) == 7
    assert logs.counters()["test_noise"]["events"] == 701


def test_a_traceback_once_a_window_and_no_source_field() -> None:
    log, clock = Log(), Clock()
    r = Repeats(log, "test_refused", source_field=None, clock=clock)
    boom = RuntimeError("a bug")
    for _ in range(3):
        r.add("handler_error", exc=boom, peer="10.0.0.9")
    [(level, _, kw)] = log.lines
    assert level == "error" and kw["exc_info"] is boom and "source" not in kw
    r.close()
    assert log.events("test_refused_repeated") == [
        {"kind": "handler_error", "more": 2, "window_s": logs.REPEAT_WINDOW_S}
    ]


def test_keys_are_bounded_whatever_the_caller_passes() -> None:
    log, clock = Log(), Clock()
    r = Repeats(log, "test_keys", clock=clock)
    for n in range(MAX_KEYS + 100):
        r.add("refused", f"10.0.{n // 256}.{n % 256}")
    assert len(r.totals) == MAX_KEYS + 1
    assert r.totals[OVERFLOW] == 100
    assert len(log.lines) == MAX_KEYS + 1


def test_the_loop_timer_ends_a_window_when_the_events_stop() -> None:
    async def main() -> None:
        log = Log()
        r = Repeats(log, "test_timer", window_s=0.05)
        for _ in range(10):
            r.add("bad_request")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not log.events("test_timer_repeated") and loop.time() < deadline:
            await asyncio.sleep(0.01)  # polls the condition, it sets no pace
        assert log.events("test_timer_repeated") == [
            {"kind": "bad_request", "source": "", "more": 9, "window_s": 0.05}
        ]

    asyncio.run(main())


def test_close_all_writes_every_open_window() -> None:
    log, clock = Log(), Clock()
    first = Repeats(log, "test_close_a", clock=clock)
    second = Repeats(log, "test_close_b", clock=clock)
    for _ in range(3):
        first.add("x")
        second.add("y")
    logs.close_all()
    assert log.events("test_close_a_repeated")[0]["more"] == 2
    assert log.events("test_close_b_repeated")[0]["more"] == 2
