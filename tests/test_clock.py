"""time.sync (SPEC D16): measured offset, step beyond the threshold, RTC,
CLOCK_DRIFT — on an injected clock, never the machine's."""

from __future__ import annotations

from collector.clock import ClockSync


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
