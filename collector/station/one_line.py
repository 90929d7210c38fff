"""What a port on one serial line does with its descriptor, whatever it does with
the line: a poll port (collector/station/port.py) and a listening tap
(collector/station/listen.py). A relay holds two lines (collector/station/relay.py).

The line is opened on the port's first run and closed by the daemon between
runs (PORT_OFFLINE, reopened with backoff); each port opens it its own way
(a tap read-only: SPEC D20).
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod

from collector.device.serialfd import LineSettings


class OneLinePort(ABC):
    """A port's one serial line: its descriptor and the loop watching it."""

    def __init__(self, number: int, line: LineSettings) -> None:
        self.number = number
        self.line = line
        self._fd: int | None = None
        #: Set by a port that registers a writer too (its close removes both).
        self._loop: asyncio.AbstractEventLoop | None = None

    @abstractmethod
    async def open(self) -> None:
        """Open the line raw and non-blocking (``_fd``); OSError says why it cannot."""

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
                self._loop.remove_writer(self._fd)
            os.close(self._fd)
        self._fd = None

    async def _opened(self) -> int:
        """The line's descriptor, opened first if it is not."""
        if self._fd is None:
            await self.open()
        assert self._fd is not None
        return self._fd
