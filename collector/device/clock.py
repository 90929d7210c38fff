"""Clock calibration from the platform's time (SPEC D16; ``time.sync``).

The platform sends its own time (``platform_ts``, epoch ms). The offset is
``platform_ts − local time`` when the command is handled: it includes the
message's transit (normally well under a second on 4G), which is why
the step threshold is far above it. Beyond the threshold the system clock
is stepped and the RTC written from it where the box has one, so the time
survives a power loss. Both need CAP_SYS_TIME (and the RTC root's
/dev/rtc0), which the collector does not hold: on the gateway they are asked
of the clock helper (collector/device/clock_helper.py, socket-activated by
systemd/forecourt-clock.socket, one request per connection). Where no
helper listens (a development machine) the collector tries itself
(``clock_settime``, ``hwclock --systohc``) and, without the right, the
command answers CLOCK_NOT_SET. Beyond the alarm
threshold a CLOCK_DRIFT alarm tells the platform its data were stamped by a
wrong clock until now.

Every effect is injected (``now``, ``set_clock``, ``write_rtc``): tests step
a fake clock, never the machine's.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: hwclock may wait for the RTC's next second edge: bound it.
HWCLOCK_TIMEOUT_S = 5.0
#: The clock helper's socket (systemd/forecourt-clock.socket ListenStream=).
HELPER_SOCKET = "/run/forecourt-clock.sock"
#: A helper is a fresh python (about a second on a slow gateway) and may run
#: hwclock (HWCLOCK_TIMEOUT_S): bound one request.
HELPER_TIMEOUT_S = 15.0
#: A reply is one short line.
MAX_HELPER_REPLY = 256


def ask_helper(request: str, path: str = HELPER_SOCKET) -> str:
    """One request line to the clock helper, its reply line. FileNotFoundError
    or ConnectionRefusedError: no helper here; OSError: the helper's error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(HELPER_TIMEOUT_S)
        s.connect(path)
        s.sendall(request.encode("ascii") + b"\n")
        reply = b""
        while b"\n" not in reply and len(reply) < MAX_HELPER_REPLY:
            chunk = s.recv(MAX_HELPER_REPLY)
            if not chunk:
                break
            reply += chunk
    line = reply.partition(b"\n")[0].decode("ascii", "replace")
    if line.startswith("error ") or not line:
        raise OSError(f"clock helper: {line[6:] or 'no reply'}")
    return line


def system_set_clock(epoch_s: float, helper: str = HELPER_SOCKET) -> None:
    try:
        # The offset, not the time: it stays true while the helper starts.
        ask_helper(f"step {round((epoch_s - time.time()) * 1e9)}", helper)
    except (FileNotFoundError, ConnectionRefusedError):
        time.clock_settime(time.CLOCK_REALTIME, epoch_s)  # no helper: our own right, if any


def system_write_rtc(helper: str = HELPER_SOCKET) -> bool:
    """Write the RTC from the system clock; False where there is no hwclock / RTC."""
    try:
        return ask_helper("rtc", helper) == "ok"
    except (FileNotFoundError, ConnectionRefusedError):
        pass  # no helper: our own right, if any
    except OSError:
        return False
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


@dataclass(eq=False, kw_only=True)
class ClockSync:
    """Measure the offset to the platform, step when it is too large, remember it."""

    step_threshold_ms: int
    alarm_threshold_ms: int
    now: Callable[[], float] = time.time
    set_clock: Callable[[float], None] = system_set_clock
    write_rtc: Callable[[], bool] = system_write_rtc
    #: The offset left after the last sync (0 after a step): the heartbeat's.
    offset_ms: int = field(default=0, init=False)

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
