"""Serial lines as raw, non-blocking file descriptors (relay and listen ports).

A relay must pass every byte on at once, so its ports read and write the
descriptors directly from the event loop (``loop.add_reader``), without the
buffering layers of a stream. A listening tap opens its line **read-only**:
the kernel itself refuses any write, whatever the code above does (D20).

Rates without a ``termios`` constant (5760, 5787: Chinese current loops and
old Gilbarco sites) are set as a number through ``termios2`` (``BOTHER``);
an adapter whose clock cannot come close refuses them, and the read-back
says so.

A pseudo-terminal (the simulated lines of the tests, hil/dispenser) holds a
rate but no parity and no data bits: the kernel forces 8 bits and clears
``PARENB`` on every ``tcsetattr``. So that the simulator at the other end can
still see the setting its peer chose (and garble what a wrong one would
receive), on a pty only the parity is kept in ``CMSPAR`` (with ``PARODD``
for odd, which a pty keeps) and 7 data bits in ``ISTRIP`` — bits a pty holds
and that mean nothing to it; :func:`applied` reads them back. A real UART
never gets those marks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import termios
from dataclasses import dataclass
from typing import Literal

#: linux/serial.h: the RS-485 ioctl and its flags. An adapter whose
#: transceiver needs RTS to switch direction gets the kernel to do it around
#: each write (exact to the bit time, unlike toggling RTS from user space).
TIOCSRS485 = 0x542F
SER_RS485_ENABLED = 1 << 0
SER_RS485_RTS_ON_SEND = 1 << 1
SER_RS485_RTS_AFTER_SEND = 1 << 2

#: asm-generic/ioctls.h (x86, ARM, RISC-V; not MIPS, PowerPC, SPARC, Alpha):
#: struct termios2 is 4 flag words, c_line, 19 control characters and the
#: two speeds as numbers — 44 bytes.
TCGETS2, TCSETS2 = 0x802C542A, 0x402C542B
_TERMIOS2 = struct.Struct("=4IB19s2I")
#: c_cflag: the speed is the number in c_ispeed / c_ospeed.
BOTHER = 0o010000
#: c_cflag: mark/space parity. On a pty only: "parity on" (module docstring).
CMSPAR = 0o10000000000
#: linux/major.h: Unix98 pty slaves (/dev/pts/N), majors 136..143.
PTY_SLAVE_MAJORS = range(136, 144)


@dataclass(frozen=True, slots=True)
class LineSettings:
    device: str
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int
    #: Kernel RS-485 direction control (None: leave the adapter as it is).
    rs485: RS485 | None = None
    #: INPCK with IGNPAR and IGNBRK: a byte with a parity or framing error,
    #: and a break, is dropped instead of passing as a plausible byte (or as
    #: 0x00, which some protocols read as a command): ``forecourt detect``
    #: sees a wrong rate or parity as broken frames, never as good ones.
    check_input: bool = False

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
    pty = is_pty(fd)
    cflag = termios.CLOCAL | termios.CREAD
    cflag |= termios.CS8 if line.bytesize == 8 else termios.CS7
    iflag = termios.INPCK | termios.IGNPAR | termios.IGNBRK if line.check_input else 0
    if line.parity in ("E", "O"):
        cflag |= termios.PARENB
        if line.parity == "O":
            cflag |= termios.PARODD
        if pty:
            cflag |= CMSPAR
    if pty and line.bytesize == 7:
        iflag |= termios.ISTRIP
    if line.stopbits == 2:
        cflag |= termios.CSTOPB
    cc = termios.tcgetattr(fd)[6]
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    try:
        try:
            if speed is None:  # a rate as a number (BOTHER)
                termios.tcsetattr(fd, termios.TCSANOW, [iflag, 0, cflag, 0, 0, 0, cc])
                _set_speed(fd, line.baudrate)
            else:
                termios.tcsetattr(fd, termios.TCSANOW, [iflag, 0, cflag, 0, speed, speed, cc])
        except termios.error as exc:
            # A pty answers EINVAL when all it kept of a request equals what it
            # had (8E1 asked again: the parity is dropped both times).
            if not (pty and exc.args[0] == errno.EINVAL):
                raise
        flags, rate = _read_termios2(fd)
    except (termios.error, OSError) as exc:
        reason = exc.args[-1] if isinstance(exc, termios.error) else (exc.strerror or exc)
        raise OSError(f"the device refuses line settings {line.describe()}: {reason}") from exc
    # tcsetattr succeeds when *any* change applied: a driver that silently
    # drops parity would garble every frame. Read back and check (a pty drops
    # parity and data bits by design; it keeps the marks instead).
    mask = termios.CSIZE | termios.PARENB | termios.PARODD | termios.CSTOPB | CMSPAR
    if pty:
        mask &= ~(termios.CSIZE | termios.PARENB)
    if flags[2] & mask != cflag & mask or flags[0] & iflag != iflag or rate != line.baudrate:
        raise OSError(f"the device refuses line settings {line.describe()}: not applied")


def is_pty(fd: int) -> bool:
    """Whether ``fd`` is a pseudo-terminal's slave (a simulated line)."""
    import stat

    st = os.fstat(fd)
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in PTY_SLAVE_MAJORS


def _read_termios2(fd: int) -> tuple[list[int], int]:
    """The four flag words and the output rate as a number (TCGETS2)."""
    raw = fcntl.ioctl(fd, TCGETS2, bytes(_TERMIOS2.size))
    iflag, oflag, cflag, lflag, _, _, _, ospeed = _TERMIOS2.unpack(raw)
    return [iflag, oflag, cflag, lflag], ospeed


def _set_speed(fd: int, rate: int) -> None:
    """Set ``rate`` as a number in both directions (BOTHER, TCSETS2)."""
    raw = fcntl.ioctl(fd, TCGETS2, bytes(_TERMIOS2.size))
    iflag, oflag, cflag, lflag, line, cc, _, _ = _TERMIOS2.unpack(raw)
    cflag = (cflag & ~termios.CBAUD & ~(termios.CBAUD << 16)) | BOTHER
    fcntl.ioctl(fd, TCSETS2, _TERMIOS2.pack(iflag, oflag, cflag, lflag, line, cc, rate, rate))


@dataclass(frozen=True, slots=True)
class Applied:
    """A line's settings as its termios hold them now (read by a simulator)."""

    baudrate: int
    bytesize: Literal[7, 8]
    parity: Literal["N", "E", "O"]
    stopbits: Literal[1, 2]
    #: INPCK: a byte with a parity or framing error is not passed as read.
    input_checked: bool
    #: IGNPAR: such a byte is dropped (else it reads as 0x00).
    errors_dropped: bool = False
    #: IGNBRK: a break is dropped (else it reads as 0x00).
    breaks_dropped: bool = False


def applied(fd: int) -> Applied:
    """What the line at ``fd`` is set to, the pty marks included (module docstring)."""
    flags, rate = _read_termios2(fd)
    iflag, cflag = flags[0], flags[2]
    parity_on = bool(cflag & (termios.PARENB | CMSPAR))
    seven = (cflag & termios.CSIZE) == termios.CS7 or bool(iflag & termios.ISTRIP)
    return Applied(
        baudrate=rate,
        bytesize=7 if seven else 8,
        parity=("O" if cflag & termios.PARODD else "E") if parity_on else "N",
        stopbits=2 if cflag & termios.CSTOPB else 1,
        input_checked=bool(iflag & termios.INPCK),
        errors_dropped=bool(iflag & termios.IGNPAR),
        breaks_dropped=bool(iflag & termios.IGNBRK),
    )


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
