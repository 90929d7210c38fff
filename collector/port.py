"""One dispenser port in ``poll`` mode: the thin I/O around a sans-IO driver.

The port task owns the serial line and the clock; the driver owns the
protocol. Each turn: ask the driver for its next read-only request, write
it, feed what arrives until the driver has its response or the deadline
passes, hand the events on, wait the inter-poll gap.

Store first: a sale is committed to the store *before* the driver is told
it may confirm it to the dispenser (SPEC D6; :mod:`collector.sink`). If the
process dies between the two, the dispenser offers the record again and the
store recognises it by the dispenser's own key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone

import structlog

from buffer.store import OrderStore
from collector import capture
from collector.nozzles import NozzleTable
from collector.sink import PortSink, PortStats
from protocols.base import PollDriver
from protocols.events import Event

log = structlog.get_logger("collector.port")

#: Bytes asked of the serial reader per read: larger than any Sinopec frame
#: (a 95-byte record doubles to at most ~200 bytes with FA escapes) so one
#: response is usually one read, small enough to bound memory per port.
READ_CHUNK = 512


@dataclass(frozen=True, slots=True)
class LineSettings:
    device: str
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int


class PollPort:
    """The collector as master on one line (a dedicated data / tax-control port)."""

    def __init__(
        self,
        *,
        number: int,
        line: LineSettings,
        driver: PollDriver,
        store: OrderStore,
        nozzles: NozzleTable,
        station: str,
        tz: timezone,
        poll_interval_s: float,
        response_timeout_s: float,
        on_commit: Callable[[], None],
    ) -> None:
        self.number = number
        self.line = line
        self.driver = driver
        self.store = store
        self.nozzles = nozzles
        self.station = station
        self.tz = tz
        self.poll_interval_s = poll_interval_s
        self.response_timeout_s = response_timeout_s
        self.on_commit = on_commit
        self.stats = PortStats()
        self.sink = PortSink(
            number=number,
            store=store,
            nozzles=nozzles,
            station=station,
            tz=tz,
            on_commit=on_commit,
            stats=self.stats,
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Open the serial line; raises OSError with the device's own reason."""
        import termios

        import serial_asyncio  # the only module here that touches serial

        line = self.line
        try:
            self._reader, self._writer = await serial_asyncio.open_serial_connection(
                url=line.device,
                baudrate=line.baudrate,
                bytesize=line.bytesize,
                parity=line.parity,
                stopbits=line.stopbits,
            )
        except termios.error as exc:
            # The driver refused the line settings (a pty refuses even parity):
            # say which settings, as an OSError like every other open failure.
            settings = f"{line.baudrate} {line.bytesize}{line.parity}{line.stopbits}"
            raise OSError(f"the device refuses line settings {settings}: {exc.args[-1]}") from exc
        log.info("port_open", port=self.number, device=self.line.device)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def run(self) -> None:
        if self._reader is None:
            await self.open()
        while True:
            await self._turn()
            await asyncio.sleep(self.poll_interval_s)

    async def _turn(self) -> None:
        assert self._reader is not None and self._writer is not None
        request = self.driver.next_request()
        if request is None:
            return
        self._writer.write(request)
        capture.feed(self.number, "tx", request)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that races with completion, and the port would never stop.
        try:
            # A hung adapter (or XOFF) would block this port forever: reopen it.
            async with asyncio.timeout(self.response_timeout_s):
                await self._writer.drain()
        except TimeoutError:
            raise ConnectionError(f"{self.line.device}: write did not drain") from None
        deadline = time.monotonic() + self.response_timeout_s
        while self.driver.awaiting_response:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._handle(self.driver.response_timeout())
                return
            try:
                async with asyncio.timeout(remaining):
                    chunk = await self._reader.read(READ_CHUNK)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"{self.line.device}: serial line closed")
            capture.feed(self.number, "rx", chunk)
            self._handle(self.driver.receive_data(chunk))

    def _handle(self, events: list[Event]) -> None:
        self.sink.handle(events, self.driver.sale_committed)
