"""Clock calibration from the platform's time (SPEC D16; ``time.sync``).

The platform sends its own time (``platform_ts``, epoch ms). The offset is
``platform_ts − local time`` when the command is handled: it includes the
message's transit (normally well under a second on 4G), which is why
the step threshold is far above it. Beyond the threshold the system clock
is stepped (``clock_settime``, needs CAP_SYS_TIME — the systemd unit grants
it and nothing else) and the RTC written from it (``hwclock --systohc``)
where the box has one, so the time survives a power loss. Beyond the alarm
threshold a CLOCK_DRIFT alarm tells the platform its data were stamped by a
wrong clock until now.

Every effect is injected (``now``, ``set_clock``, ``write_rtc``): tests step
a fake clock, never the machine's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: hwclock may wait for the RTC's next second edge: bound it.
HWCLOCK_TIMEOUT_S = 5.0


def system_set_clock(epoch_s: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, epoch_s)


def system_write_rtc() -> bool:
    """Write the RTC from the system clock; False where there is no hwclock / RTC."""
    hwclock = shutil.which("hwclock")
    if hwclock is None:
        return False
    done = subprocess.run(
        [hwclock, "--systohc", "--utc"], capture_output=True, timeout=HWCLOCK_TIMEOUT_S
    )
    return done.returncode == 0


@dataclass(frozen=True, slots=True)
class SyncResult:
    offset_ms: int
    stepped: bool
    rtc_written: bool
    drift_alarm: bool

    def reply(self) -> dict[str, Any]:
        return {
            "offset_ms": self.offset_ms,
            "stepped": self.stepped,
            "rtc_written": self.rtc_written,
        }


class ClockSync:
    """Measure the offset to the platform, step when it is too large, remember it."""

    def __init__(
        self,
        *,
        step_threshold_ms: int,
        alarm_threshold_ms: int,
        now: Callable[[], float] = time.time,
        set_clock: Callable[[float], None] = system_set_clock,
        write_rtc: Callable[[], bool] = system_write_rtc,
    ) -> None:
        self.step_threshold_ms = step_threshold_ms
        self.alarm_threshold_ms = alarm_threshold_ms
        self.now = now
        self.set_clock = set_clock
        self.write_rtc = write_rtc
        #: The offset left after the last sync (0 after a step): the heartbeat's.
        self.offset_ms = 0

    def sync(self, platform_ts_ms: int) -> SyncResult:
        offset = platform_ts_ms - round(self.now() * 1000)
        stepped = rtc = False
        if abs(offset) > self.step_threshold_ms:
            self.set_clock(self.now() + offset / 1000)
            stepped = True
            rtc = self.write_rtc()
        self.offset_ms = 0 if stepped else offset
        drift = abs(offset) > self.alarm_threshold_ms
        return SyncResult(offset, stepped, rtc, drift)
