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

#: linux/serial.h: the RS-485 ioctl and its flags. An adapter whose
#: transceiver needs RTS to switch direction gets the kernel to do it around
#: each write (exact to the bit time, unlike toggling RTS from user space).
TIOCSRS485 = 0x542F
SER_RS485_ENABLED = 1 << 0
SER_RS485_RTS_ON_SEND = 1 << 1
SER_RS485_RTS_AFTER_SEND = 1 << 2


@dataclass(frozen=True, slots=True)
class LineSettings:
    device: str
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int
    #: Kernel RS-485 direction control (None: leave the adapter as it is).
    rs485: RS485 | None = None

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True)
class RS485:
    rts_on_send: bool = True  # RTS high while sending (most transceivers)
    delay_before_ms: int = 0  # RTS set this long before the first bit
    delay_after_ms: int = 0  # and kept this long after the last

    def ioctl_bytes(self) -> bytes:
        import struct

        flags = SER_RS485_ENABLED
        flags |= SER_RS485_RTS_ON_SEND if self.rts_on_send else SER_RS485_RTS_AFTER_SEND
        # struct serial_rs485: flags, delay_rts_before_send, delay_rts_after_send, padding[5]
        return struct.pack("=8I", flags, self.delay_before_ms, self.delay_after_ms, 0, 0, 0, 0, 0)


def open_line(line: LineSettings, *, writable: bool) -> int:
    """Open ``line.device`` raw and non-blocking; OSError says why it cannot."""
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOCTTY | os.O_NONBLOCK
    fd = os.open(line.device, flags)
    try:
        configure(fd, line)
        if line.rs485 is not None:
            enable_rs485(fd, line)
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


def enable_rs485(fd: int, line: LineSettings) -> None:
    """Switch the adapter's driver to RS-485 mode (TIOCSRS485)."""
    import fcntl

    assert line.rs485 is not None
    try:
        fcntl.ioctl(fd, TIOCSRS485, line.rs485.ioctl_bytes())
    except OSError as exc:
        raise OSError(
            f"the device refuses line settings {line.describe()}: "
            f"no RS-485 mode ({exc.strerror or exc})"
        ) from exc
