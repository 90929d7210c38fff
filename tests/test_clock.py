"""time.sync (SPEC D16): measured offset, step beyond the threshold, RTC,
CLOCK_DRIFT, and the clock helper that steps for the collector — on an
injected clock, never the machine's."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.device import clock as clock_mod
from collector.device import clock_helper
from collector.device.clock import ClockSync

HELPER = Path(clock_helper.__file__)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.t = now
        self.steps: list[float] = []
        self.rtc_writes = 0

    def now(self) -> float:
        return self.t

    def set(self, epoch_s: float) -> None:
        self.steps.append(epoch_s)
        self.t = epoch_s

    def rtc(self) -> bool:
        self.rtc_writes += 1
        return True


def sync_of(clock: FakeClock) -> ClockSync:
    return ClockSync(
        step_threshold_ms=1000, alarm_threshold_ms=5000,
        now=clock.now, set_clock=clock.set, write_rtc=clock.rtc,
    )  # fmt: skip


def test_small_offset_is_measured_not_stepped() -> None:
    clock = FakeClock(1_800_000_000.0)
    sync = sync_of(clock)
    result = sync.sync(1_800_000_000_400)
    assert (result.offset_ms, result.stepped, result.rtc_written) == (400, False, False)
    assert clock.steps == [] and sync.offset_ms == 400 and not result.drift_alarm


def test_large_offset_steps_the_clock_and_the_rtc_and_alarms() -> None:
    clock = FakeClock(1_800_000_000.0)
    sync = sync_of(clock)
    result = sync.sync(1_800_000_000_000 - 90_000)  # the box is 90 s fast
    assert result.reply() == {"offset_ms": -90_000, "stepped": True, "rtc_written": True}
    assert clock.steps == [1_800_000_000.0 - 90.0] and clock.rtc_writes == 1
    assert result.drift_alarm and sync.offset_ms == 0, "after the step the offset is gone"
    again = sync.sync(1_800_000_000_000 - 90_000)
    assert (again.offset_ms, again.stepped) == (0, False)


def test_step_without_alarm_between_the_thresholds() -> None:
    clock = FakeClock(100.0)
    result = sync_of(clock).sync(102_500)
    assert result.stepped and not result.drift_alarm


# -- the clock helper (collector/device/clock_helper.py) ---------------------------------

NOW_NS = 1_800_000_000 * 10**9


class HelperClock:
    def __init__(self) -> None:
        self.set_to: list[int] = []

    def answer(self, line: str, rtc: bool | Exception = True) -> str:
        def write_rtc() -> bool:
            if isinstance(rtc, Exception):
                raise rtc
            return rtc

        return clock_helper.answer(
            line, now_ns=lambda: NOW_NS, set_clock=self.set_to.append, write_rtc=write_rtc
        )


def test_the_helper_steps_by_the_offset_and_writes_the_rtc() -> None:
    clock = HelperClock()
    assert clock.answer("step -90000000000") == "ok"
    assert clock.set_to == [NOW_NS - 90 * 10**9]
    assert clock.answer("rtc") == "ok"
    assert clock.answer("rtc", rtc=False) == "none"
    assert clock.answer("rtc", rtc=OSError("hwclock: no usable clock")) == (
        "error hwclock: no usable clock"
    )


def test_the_helper_never_sends_the_clock_outside_its_window() -> None:
    """Whatever the collector asks, not to 1970 nor past 2100; junk is refused."""
    clock = HelperClock()
    to_1970 = clock.answer(f"step {-NOW_NS}")
    assert to_1970 == "error refused: the step would set the clock to 0 s"
    assert clock.answer(f"step {clock_helper.LATEST_NS - NOW_NS}").startswith("error refused")
    for junk in ("step", "step 1.5", "step 1 2", "settime 0", "", "rtc now"):
        assert clock.answer(junk).startswith("error "), junk
    assert clock.set_to == []


@contextlib.contextmanager
def helper_socket(tmp_path: Path, reply: Callable[[str], str] | None = None) -> Iterator[str]:
    """A socket like forecourt-clock.socket: each connection served by the
    real helper process with the connection as stdin and stdout (Accept=yes),
    or, given ``reply``, answered in the test (no clock is touched)."""
    path = str(tmp_path / "clock.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(2)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    if reply is None:
                        subprocess.run(
                            [sys.executable, "-I", str(HELPER)], stdin=conn, stdout=conn,
                            stderr=subprocess.DEVNULL, timeout=30, check=False,
                        )  # fmt: skip
                    else:
                        line = conn.makefile("rb").readline().decode()
                        conn.sendall((reply(line) + "\n").encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def test_the_collector_asks_the_helper_for_the_offset(tmp_path: Path) -> None:
    clock = HelperClock()
    with helper_socket(tmp_path, clock.answer) as path:
        before = time.time()
        clock_mod.system_set_clock(before - 90.0, helper=path)
        assert clock_mod.system_write_rtc(helper=path) is True
    [target] = clock.set_to
    # The offset crossed, not the time: -90 s less the few µs it took to send it.
    assert -90.5 < (target - NOW_NS) / 1e9 <= -90.0 + (time.time() - before)


def test_a_refusal_of_the_real_helper_process_is_the_commands_error(tmp_path: Path) -> None:
    """The helper as systemd runs it (stdlib only, ``-I``, the connection as
    stdin and stdout): a step to 1970 is refused, and the collector raises
    the OSError time.sync answers CLOCK_NOT_SET with; the clock is untouched."""
    with helper_socket(tmp_path) as path:
        with pytest.raises(OSError, match="clock helper: refused: the step would set the clock"):
            clock_mod.system_set_clock(0.0, helper=path)
        with pytest.raises(OSError, match="clock helper: unknown request"):
            clock_mod.ask_helper("settime 0", path)
    assert time.time() > 1_704_067_200
