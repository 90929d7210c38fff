"""Step the system clock and write the RTC for ``time.sync``: as root, apart.

The collector holds no capability (systemd/forecourt-collector.service:
``CapabilityBoundingSet=`` empty, ``ProtectClock=yes``): a process that
parses the station LAN's and the dispensers' bytes cannot set the clock
that stamps the regulator's records. Stepping the clock needs CAP_SYS_TIME,
and writing the RTC needs it too (the kernel's ``RTC_SET_TIME``) besides
/dev/rtc0, which is root's and 0600. Both are done here, in a process
systemd starts for one connection on ``/run/forecourt-clock.sock``
(systemd/forecourt-clock.socket, ``Accept=yes``: the connection is this
process's stdin and stdout; the socket is root's and the ``forecourt``
group's, 0660) with CAP_SYS_TIME and nothing else, no network, gone after
one request (systemd/forecourt-clock@.service).

One ASCII line each way::

    → step <offset_ns>    move the clock by offset_ns from what it reads now
    ← ok
    → rtc                 write the RTC from the system clock (hwclock)
    ← ok                  | none (no hwclock, no RTC)
    ← error <why>

An offset, not a time: the request waits for this process to start (about
a second on a slow gateway), and the offset the collector measured is as
true then as when it was measured. A step that would put the clock outside
[:data:`EARLIEST_NS`, :data:`LATEST_NS`) is refused: whatever the collector
asks, this path never sends the clock to 1970 or past 2100.

Standard library only, no project imports: installed as
/usr/lib/forecourt/clock-helper.py and run by the system python, like the
release launcher (collector/ota/launcher.py). Every effect is injected in
:func:`answer`: tests never step the machine's clock.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

#: A request is one short line; more is not one of ours.
MAX_REQUEST_BYTES = 64
#: The collector sends its line at once; a connection that does not is dropped.
REQUEST_TIMEOUT_S = 5.0
#: hwclock may wait for the RTC's next second edge.
HWCLOCK_TIMEOUT_S = 5.0
#: 2024-01-01T00:00:00Z: no station records are older than the product.
EARLIEST_NS = 1_704_067_200 * 10**9
#: 2100-01-01T00:00:00Z.
LATEST_NS = 4_102_444_800 * 10**9


def system_set_clock(epoch_ns: int) -> None:
    time.clock_settime_ns(time.CLOCK_REALTIME, epoch_ns)


def system_write_rtc() -> bool:
    """The RTC from the system clock; False where there is no hwclock.
    ``--noadjfile``: /etc/adjtime stays as it is (the unit's /etc is read-only)."""
    hwclock = shutil.which("hwclock") or next(
        (p for p in ("/usr/sbin/hwclock", "/sbin/hwclock") if os.path.exists(p)), None
    )
    if hwclock is None:
        return False
    done = subprocess.run(
        [hwclock, "--systohc", "--utc", "--noadjfile"],
        capture_output=True,
        timeout=HWCLOCK_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise OSError(done.stderr.decode("utf-8", "replace").strip()[-200:] or "hwclock failed")
    return True


def answer(
    line: str,
    *,
    now_ns: Callable[[], int] = time.time_ns,
    set_clock: Callable[[int], None] = system_set_clock,
    write_rtc: Callable[[], bool] = system_write_rtc,
) -> str:
    """The reply line (without its newline) to one request line."""
    words = line.split()
    if len(words) == 2 and words[0] == "step":
        try:
            offset_ns = int(words[1])
        except ValueError:
            return "error the offset is not an integer of nanoseconds"
        target = now_ns() + offset_ns
        if not EARLIEST_NS <= target < LATEST_NS:
            return f"error refused: the step would set the clock to {target // 10**9} s"
        try:
            set_clock(target)
        except OSError as exc:
            return f"error {exc.strerror or exc}"
        return "ok"
    if words == ["rtc"]:
        try:
            return "ok" if write_rtc() else "none"
        except (OSError, subprocess.SubprocessError) as exc:
            return f"error {exc}"
    return "error unknown request"


def read_request(fd: int, timeout_s: float = REQUEST_TIMEOUT_S) -> str | None:
    """One line from ``fd`` within the bounds, or None."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in data and len(data) <= MAX_REQUEST_BYTES:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, MAX_REQUEST_BYTES + 1 - len(data))
        if not chunk:
            break
        data += chunk
    line, newline, _ = data.partition(b"\n")
    if not newline or len(line) > MAX_REQUEST_BYTES:
        return None
    return line.decode("ascii", "replace")


def main() -> int:
    line = read_request(0)
    reply = "error no request line" if line is None else answer(line)
    os.write(1, (reply + "\n").encode("ascii", "replace"))
    if reply.startswith("error"):
        print(f"clock-helper: {line!r}: {reply}", file=sys.stderr)  # the journal
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
