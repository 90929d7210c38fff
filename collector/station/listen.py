"""A port in ``listen`` mode: a receive-only tap on a bus.

The line is opened read-only (collector/device/serialfd.py): there is no writer
in this module and the kernel would refuse one anyway, so the collector
cannot disturb the bus it watches (SPEC D20). Both directions arrive mixed
on one half-duplex pair; the protocol's bus monitor tells them apart
(``receive_bus``). Only protocols whose frames say which side sent them
can be listened to (``protocols.bus_monitors()``).

If parsing fails the tap stops parsing (TAP_PARSER_FAILED) — there is no
byte to pass on, so nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import structlog

from collector.device.serialfd import LineSettings, open_line
from collector.station import capture
from collector.station.books import ticking
from collector.station.one_line import OneLinePort
from collector.station.sink import PortSink, PortStats

log = structlog.get_logger("collector.station.listen")

#: Bytes read per wakeup: a few frames.
READ_CHUNK = 4096


class ListenPort(OneLinePort):
    """Read a bus, never write to it; feed what passes to a bus monitor."""

    def __init__(self, *, number: int, line: LineSettings, monitor: Any, sink: PortSink) -> None:
        super().__init__(number, line)
        self.monitor = monitor
        self.sink = sink
        self.stats: PortStats = sink.stats
        self.parsing = True
        self.received = 0
        self._failed: asyncio.Future[None] | None = None

    @property
    def rx_bytes(self) -> int:
        """Bytes read from the bus (collector/station/linecheck.py)."""
        return self.received

    async def open(self) -> None:
        self._fd = open_line(self.line, writable=False)
        log.info("tap_open", port=self.number, device=self.line.device)

    async def run(self) -> None:
        fd = await self._opened()
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        loop.add_reader(fd, self._readable)
        with ticking(self.sink.books, loop):
            try:
                await self._failed
            finally:
                loop.remove_reader(fd)

    def _readable(self) -> None:
        assert self._fd is not None and self._failed is not None
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if not self._failed.done():
                self._failed.set_exception(ConnectionError(f"{self.line.device}: {exc}"))
            return
        if not data:
            if not self._failed.done():
                self._failed.set_exception(ConnectionError(f"{self.line.device}: line closed"))
            return
        self.received += len(data)
        capture.feed(self.number, "bus", data)
        if not self.parsing:
            return
        self.parsing = self.sink.parse_guarded(self.monitor.receive_bus, data, "TAP_PARSER_FAILED")
