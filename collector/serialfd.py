"""Serial lines as raw, non-blocking file descriptors (relay and listen ports).

A relay must pass every byte on at once, so its ports read and write the
descriptors directly from the event loop (``loop.add_reader``), without the
buffering layers of a stream. A listening tap opens its line **read-only**:
the kernel itself refuses any write, whatever the code above does (D20).
"""

from __future__ import annotations

import os
import termios
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LineSettings:
    device: str
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


def open_line(line: LineSettings, *, writable: bool) -> int:
    """Open ``line.device`` raw and non-blocking; OSError says why it cannot."""
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOCTTY | os.O_NONBLOCK
    fd = os.open(line.device, flags)
    try:
        configure(fd, line)
    except BaseException:
        os.close(fd)
        raise
    return fd


def configure(fd: int, line: LineSettings) -> None:
    """Raw mode (no echo, no translation, no flow control) with the line's settings."""
    speed = getattr(termios, f"B{line.baudrate}", None)
    if speed is None:
        raise OSError(f"baud rate {line.baudrate} is not supported here")
    cflag = termios.CLOCAL | termios.CREAD
    cflag |= termios.CS8 if line.bytesize == 8 else termios.CS7
    if line.parity in ("E", "O"):
        cflag |= termios.PARENB
        if line.parity == "O":
            cflag |= termios.PARODD
    if line.stopbits == 2:
        cflag |= termios.CSTOPB
    cc = termios.tcgetattr(fd)[6]
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    try:
        termios.tcsetattr(fd, termios.TCSANOW, [0, 0, cflag, 0, speed, speed, cc])
        applied = termios.tcgetattr(fd)
    except termios.error as exc:
        raise OSError(
            f"the device refuses line settings {line.describe()}: {exc.args[-1]}"
        ) from exc
    # tcsetattr succeeds when *any* change applied: a driver that silently
    # drops parity (a pty does) would garble every frame. Read back and check.
    mask = termios.CSIZE | termios.PARENB | termios.PARODD | termios.CSTOPB
    if applied[2] & mask != cflag & mask or applied[4:6] != [speed, speed]:
        raise OSError(f"the device refuses line settings {line.describe()}: not applied")
