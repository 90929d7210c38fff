"""One dispenser port in ``poll`` mode: the thin I/O around a sans-IO driver.

The port task owns the serial line and the clock; the driver owns the
protocol. Each turn: ask the driver for its next read-only request, write
it, feed what arrives until the driver has its response or the deadline
passes, hand the events on, wait the inter-poll gap.

Store first: a sale is committed to the store *before* the driver is told
it may confirm it to the dispenser (SPEC D6; :mod:`collector.station.sink`). If the
process dies between the two, the dispenser offers the record again and the
store recognises it by the dispenser's own key.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import timezone

import structlog

from buffer.store import OrderStore
from collector.device.serialfd import LineSettings, open_line
from collector.station import capture
from collector.station.edge import EdgeSettings
from collector.station.nozzles import NozzleTable
from collector.station.one_line import OneLinePort
from collector.station.sink import PortSink, PortStats
from protocols.base import PollDriver
from protocols.events import Event

log = structlog.get_logger("collector.station.port")

#: Bytes asked of the serial reader per read: larger than any Sinopec frame
#: (a 95-byte record doubles to at most ~200 bytes with FA escapes) so one
#: response is usually one read, small enough to bound memory per port.
READ_CHUNK = 512

#: Pause before a follow-up request (see :meth:`PollPort.run`), ms, for a
#: driver no protocol descriptor names. A protocol's own is its descriptor's
#: ``inter_frame_gap_ms`` (the quiet time its link wants between frames);
#: each port may override it (``inter_frame_gap_ms``).
DEFAULT_INTER_FRAME_GAP_MS = 10

#: Follow-ups in a row before the port takes a normal poll interval again:
#: enough for the longest exchange (a DART sale: status, filling data,
#: totals ...), bounded so a chatty pump cannot monopolise the line.
MAX_FOLLOW_UPS = 8


def protocol_gap_ms(name: str) -> int:
    """The inter-frame gap protocol ``name`` wants (its descriptor's)."""
    import protocols

    try:
        return protocols.descriptor(name).inter_frame_gap_ms
    except protocols.UnknownProtocol:
        return DEFAULT_INTER_FRAME_GAP_MS


class PollPort(OneLinePort):
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
        idle_poll_interval_s: float | None = None,
        inter_frame_gap_s: float | None = None,
        on_commit: Callable[[], None],
        edge: EdgeSettings | None = None,
        nozzles_per_pump: int | None = None,
    ) -> None:
        super().__init__(number, line)
        self.driver = driver
        self.poll_interval_s = poll_interval_s
        self.idle_poll_interval_s = max(poll_interval_s, idle_poll_interval_s or 0.0)
        if inter_frame_gap_s is None:
            inter_frame_gap_s = protocol_gap_ms(driver.name) / 1000
        self.inter_frame_gap_s = inter_frame_gap_s
        self.response_timeout_s = response_timeout_s
        self.stats = PortStats()
        self.sink = PortSink(
            number=number,
            store=store,
            nozzles=nozzles,
            station=station,
            tz=tz,
            on_commit=on_commit,
            stats=self.stats,
            edge=edge or EdgeSettings(),
            protocol=driver.name,
            nozzles_per_pump=nozzles_per_pump,
        )
        self._waiter: asyncio.Future[bool] | None = None  # True: response complete
        self._failure: ConnectionError | None = None
        self.rx_bytes = 0  # every byte the line brought (collector/station/linecheck.py)

    async def open(self) -> None:
        """Open the serial line raw and non-blocking; OSError says why it cannot."""
        self._fd = open_line(self.line, writable=True)
        self._failure = None
        log.info("port_open", port=self.number, device=self.line.device)

    async def run(self) -> None:
        fd = await self._opened()
        loop = self._loop = asyncio.get_running_loop()
        # One reader for the port's whole life: no per-read registration, so
        # an idle poll costs one write, one read and one timer (bench/ports32.py).
        loop.add_reader(fd, self._readable)
        follow_ups = 0
        while True:
            changes = self.sink.changes
            link_only = await self._turn()
            # A driver that says where it is (``mid_exchange``) is trusted; for
            # the others a request that expected no answer means "go on".
            hint = getattr(self.driver, "mid_exchange", None)
            continuing = link_only if hint is None else bool(hint)
            changed = self.sink.changes != changes
            if (continuing or changed) and follow_ups < MAX_FOLLOW_UPS:
                # The driver is mid-exchange (a DART cycle, a Gilbarco sale
                # read), or something changed: the next request is the next step of the
                # same exchange, so it goes after the line's inter-frame gap,
                # not after a whole poll interval.
                follow_ups += 1
                pause = self.inter_frame_gap_s
            else:
                follow_ups = 0
                pause = self.poll_interval_s if self.sink.active else self.idle_poll_interval_s
            await asyncio.sleep(pause)
            if self._failure is not None:
                raise self._failure

    def _fail(self, reason: str) -> None:
        self._failure = ConnectionError(f"{self.line.device}: {reason}")
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._failure)

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            chunk = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the adapter is gone
            self._fail(exc.strerror or str(exc))
            return
        if not chunk:
            self._fail("serial line closed")
            return
        self.rx_bytes += len(chunk)
        capture.feed(self.number, "rx", chunk)
        # Bytes outside a request's window (a late answer, noise) go to the
        # driver too: it reports them as unexpected or garbage.
        self._handle(self.driver.receive_data(chunk))
        waiter = self._waiter
        if waiter is not None and not waiter.done() and not self.driver.awaiting_response:
            waiter.set_result(True)

    async def _turn(self) -> bool:
        """One request and its answer; True when the request expected none."""
        assert self._fd is not None and self._loop is not None
        if self._failure is not None:
            raise self._failure
        request = self.driver.next_request()
        if request is None:
            return False
        await self._write(request)
        capture.feed(self.number, "tx", request)
        if not self.driver.awaiting_response:
            return True
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self.response_timeout_s, _settle, waiter, False)
        try:
            complete = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if not complete and self.driver.awaiting_response:
            self._handle(self.driver.response_timeout())
        return False

    async def _write(self, data: bytes) -> None:
        """Write all of ``data``; a line that takes nothing for a response timeout
        (a hung adapter, XOFF) has failed and is reopened."""
        assert self._fd is not None and self._loop is not None
        while data:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                raise ConnectionError(f"{self.line.device}: {exc.strerror or exc}") from None
            data = data[written:]
            if not data:
                return
            ready: asyncio.Future[bool] = self._loop.create_future()
            self._loop.add_writer(self._fd, _settle, ready, True)
            timer = self._loop.call_later(self.response_timeout_s, _settle, ready, False)
            try:
                drained = await ready
            finally:
                timer.cancel()
                self._loop.remove_writer(self._fd)
            if not drained:
                raise ConnectionError(f"{self.line.device}: write did not drain")

    def _handle(self, events: list[Event]) -> None:
        self.sink.handle(events, self.driver.sale_committed)


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
