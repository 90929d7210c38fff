"""A pty pair whose slave end is reachable through a symlink (the simulator's line)."""

from __future__ import annotations

import os
import tty
from pathlib import Path


class PtyLink:
    """A pty pair whose slave is reachable as ``path`` (a symlink).

    The slave is set raw and kept open for the link's whole life, so the
    master side never sees EIO when the collector closes and reopens it.
    ``path`` is replaced atomically and removed by :meth:`close` if it still
    points at our slave.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old link or the new one

    def read(self, size: int) -> bytes:
        """What the master side has; BlockingIOError when nothing."""
        return os.read(self.master, size)

    def write(self, data: bytes | bytearray) -> int:
        """Bytes written now (0 when the pty's buffer is full)."""
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
