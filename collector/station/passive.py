"""What a port that never speaks first shares: a relay (collector/station/relay.py)
passes the bytes on, a tap (collector/station/listen.py) only reads them.

Either feeds what passes to its protocol's bus monitor through the port's
sink, behind a guard: if the monitor raises, parsing stops for the port
(``parser_failed`` alarmed, counted) and the line goes on as before. Its run
waits for the line to fail, the books (the reconciliation with the POS)
ticking meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from collector.station.books import ticking
from collector.station.sink import PortSink, PortStats
from protocols.events import Event

#: Bytes read per wakeup: a few frames; a passive port never needs to batch.
READ_CHUNK = 4096


class PassivePort:
    """A bus monitor fed through a sink, and the future a failing line sets."""

    def __init__(self, monitor: Any, sink: PortSink, parser_failed: str) -> None:
        self.monitor = monitor
        self.sink = sink
        self.stats: PortStats = sink.stats
        #: False once the monitor raised: the bytes are no longer parsed.
        self.parsing = True
        self._parser_failed = parser_failed
        self._failed: asyncio.Future[None] | None = None

    def _parse(self, parse: Callable[[bytes], list[Event]], data: bytes) -> None:
        if self.parsing:
            self.parsing = self.sink.parse_guarded(parse, data, self._parser_failed)

    def _read(self, fd: int, device: str) -> bytes:
        """What the line has for one wakeup (empty: nothing); a line that fails
        or closes fails the port."""
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            self._fail(f"{device}: {exc.strerror or exc}")
            return b""
        if not data:
            self._fail(f"{device}: line closed")
        return data

    def _fail(self, reason: str) -> None:
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(ConnectionError(reason))

    async def _until_failed(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until :meth:`_fail` (ConnectionError), the books ticking on ``loop``."""
        self._failed = loop.create_future()
        with ticking(self.sink.books, loop):
            await self._failed
