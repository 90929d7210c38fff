"""A pty pair whose slave end is reachable through a symlink (the simulator's line)."""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path

from hil.dispenser.uart import Uart, transcode


class PtyLink:
    """A pty pair whose slave is reachable as ``path`` (a symlink).

    The slave is set raw and kept open for the link's whole life, so the
    master side never sees EIO when the collector closes and reopens it.
    ``path`` is replaced atomically and removed by :meth:`close` if it still
    points at our slave.

    ``uart``: this end's line setting. The slave starts at it (a peer that
    opens the line raw without setting it keeps it), and from then on every
    read and write goes through :func:`hil.dispenser.uart.transcode`
    against the setting the peer put on the slave (read back each time with
    collector/device/serialfd.py ``applied``, which knows the marks a pty keeps for
    parity and data bits): a peer at another rate, parity or data bits gets
    what a real UART would, not our frames. None: bytes pass as they are
    (the gauge simulator, older tests).
    """

    def __init__(self, path: Path, uart: Uart | None = None) -> None:
        self.path = path
        self.uart = uart
        self.master, self.slave = os.openpty()
        self.device = os.ttyname(self.slave)
        if uart is None:
            tty.setraw(self.slave)
        else:
            from collector.device.serialfd import LineSettings, configure

            configure(
                self.slave,
                LineSettings(self.device, uart.baudrate, uart.bytesize, uart.parity, uart.stopbits),
            )
        os.set_blocking(self.master, False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old link or the new one

    def peer(self) -> Uart:
        """The setting the line's other end has put on it (our own until it does)."""
        from collector.device.serialfd import applied

        now = applied(self.slave)
        return Uart(
            now.baudrate, now.parity, now.bytesize, now.stopbits,
            now.input_checked, now.errors_dropped, now.breaks_dropped,
        )  # fmt: skip

    def read(self, size: int) -> bytes:
        """What the master side has, as our UART reads it; BlockingIOError when nothing."""
        return self.receive(size)[1]

    def receive(self, size: int) -> tuple[bytes, bytes]:
        """(the bytes as the peer sent them, as our UART reads them);
        BlockingIOError when nothing. The first is what a current loop
        returns to its sender (its echo is the wire's, not ours)."""
        data = os.read(self.master, size)
        if self.uart is None or not data:
            return data, data
        # Our UART checks what it receives (a pump's parity check).
        own = Uart(self.uart.baudrate, self.uart.parity, self.uart.bytesize, checks_input=True)
        return data, transcode(data, self.peer(), own)

    def echo(self, data: bytes) -> None:
        """Return the peer's own bytes to it as they were (a loop's echo)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self.master, data)

    def write(self, data: bytes | bytearray) -> int:
        """Bytes of ``data`` taken now (0 when the pty's buffer is full).

        At a setting the peer disagrees with, the whole burst is taken and
        what the peer's UART would make of it written; what does not fit is
        lost, as bytes are on a line nobody reads right."""
        wire = bytes(data)
        if self.uart is not None:
            wire = transcode(wire, self.uart, self.peer())
            if wire != data:
                with contextlib.suppress(BlockingIOError):
                    os.write(self.master, wire)
                return len(data)
        try:
            return os.write(self.master, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        try:
            if os.readlink(self.path) == self.device:
                self.path.unlink()
        except OSError:
            pass
        os.close(self.master)
        os.close(self.slave)
