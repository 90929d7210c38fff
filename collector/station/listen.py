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
from typing import Any

import structlog

from collector.device.serialfd import LineSettings, open_line
from collector.station import capture
from collector.station.one_line import OneLinePort
from collector.station.passive import PassivePort
from collector.station.sink import PortSink

log = structlog.get_logger("collector.station.listen")


class ListenPort(OneLinePort, PassivePort):
    """Read a bus, never write to it; feed what passes to a bus monitor."""

    def __init__(self, *, number: int, line: LineSettings, monitor: Any, sink: PortSink) -> None:
        OneLinePort.__init__(self, number, line)
        PassivePort.__init__(self, monitor, sink, "TAP_PARSER_FAILED")
        self.received = 0

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
        loop.add_reader(fd, self._readable)
        try:
            await self._until_failed(loop)
        finally:
            loop.remove_reader(fd)

    def _readable(self) -> None:
        assert self._fd is not None and self._failed is not None
        data = self._read(self._fd, self.line.device)
        if not data:
            return
        self.received += len(data)
        capture.feed(self.number, "bus", data)
        self._parse(self.monitor.receive_bus, data)
