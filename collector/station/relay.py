"""A port in ``relay`` mode: in line between a dispenser and the station's POS.

Wiring (docs/relay.md): the dispenser's cable goes to one gateway port,
the POS's cable to another; the collector passes every byte both ways and
records what passes. The POS stays the master: it polls, it confirms, it
sets prices — the collector never originates a byte (SPEC D19, D20).

Forward first, parse after: each chunk read on one side is written to the
other side *before* the monitor sees it, in the same loop callback, so the
added delay is one read and one write (bench/relay_latency.py). Parsing
runs behind a guard: if the monitor raises, parsing stops for this port
(RELAY_PARSER_FAILED alarm, counted) and the bytes keep flowing. A sale
seen in passing is committed to the store like any other (store first);
nothing is confirmed to anyone — confirming is the POS's business; what
the POS confirms is reconciled with what the dispenser reported
(collector/station/books.py, collector/station/reconcile.py).

Back-pressure: if one side stops taking bytes (a hung adapter), at most
:data:`MAX_PENDING_BYTES` are held for it; beyond that the line is treated
as failed (PORT_OFFLINE, reopened with backoff) rather than holding bytes
whose timing the protocol has long given up on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import structlog

from collector.device.serialfd import LineSettings, open_line
from collector.station import capture
from collector.station.passive import PassivePort
from collector.station.sink import PortSink
from protocols.events import Event

log = structlog.get_logger("collector.station.relay")

#: Bytes held for a side that does not take them. 4 KiB is seconds of line
#: at 9600 baud: far past any protocol's response timeout, so anything
#: older is useless to the far end, and memory stays bounded per port.
MAX_PENDING_BYTES = 4096


class _Side:
    """One end of the relay: its descriptor and what waits to be written to it."""

    def __init__(self, name: str, line: LineSettings) -> None:
        self.name = name
        self.line = line
        self.fd: int | None = None
        self.pending = bytearray()
        self.forwarded = 0  # bytes written to this side
        self.received = 0  # bytes read from this side


class RelayPort(PassivePort):
    """Forward dispenser ⇄ POS and feed both directions to a passive monitor."""

    def __init__(
        self,
        *,
        number: int,
        dispenser: LineSettings,
        pos: LineSettings,
        monitor: Any,
        sink: PortSink,
    ) -> None:
        super().__init__(monitor, sink, "RELAY_PARSER_FAILED")
        self.number = number
        self._dispenser = _Side("dispenser", dispenser)
        self._pos = _Side("pos", pos)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._dispenser.fd is not None

    @property
    def rx_bytes(self) -> int:
        """Bytes read from the dispenser side (collector/station/linecheck.py)."""
        return self._dispenser.received

    @property
    def pos_rx_bytes(self) -> int:
        return self._pos.received

    @property
    def forwarded(self) -> dict[str, int]:
        """Bytes passed on, by the side they were written to."""
        return {"to_dispenser": self._dispenser.forwarded, "to_pos": self._pos.forwarded}

    async def open(self) -> None:
        for side in (self._dispenser, self._pos):
            try:
                side.fd = open_line(side.line, writable=True)
            except OSError:
                self.close()
                raise
        log.info("relay_open", port=self.number, dispenser=self._dispenser.line.device,
                 pos=self._pos.line.device)  # fmt: skip

    def close(self) -> None:
        loop = self._loop
        for side in (self._dispenser, self._pos):
            if side.fd is not None:
                if loop is not None:
                    loop.remove_reader(side.fd)
                    loop.remove_writer(side.fd)
                os.close(side.fd)
            side.fd = None
            side.pending.clear()

    async def run(self) -> None:
        if not self.is_open:
            await self.open()
        loop = self._loop = asyncio.get_running_loop()
        d, p = self._dispenser, self._pos
        assert d.fd is not None and p.fd is not None
        loop.add_reader(d.fd, self._readable, d, p, self.monitor.receive_response)
        loop.add_reader(p.fd, self._readable, p, d, self.monitor.receive_request)
        try:
            await self._until_failed(loop)
        finally:
            for side in (d, p):
                if side.fd is not None:
                    loop.remove_reader(side.fd)
                    loop.remove_writer(side.fd)

    # ------------------------------------------------------------ the loop callbacks

    def _readable(self, src: _Side, dst: _Side, parse: Callable[[bytes], list[Event]]) -> None:
        assert src.fd is not None
        data = self._read(src.fd, src.line.device)
        if not data:
            return
        src.received += len(data)
        self._forward(dst, data)
        # After the forward: the dispenser's bytes are "rx", the POS's "tx".
        capture.feed(self.number, "rx" if src is self._dispenser else "tx", data)
        # The bytes are already on their way: a parser bug must cost the
        # records, never the station's link.
        self._parse(parse, data)

    def _forward(self, dst: _Side, data: bytes) -> None:
        assert dst.fd is not None
        if not dst.pending:
            try:
                written = os.write(dst.fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self._fail(f"{dst.line.device}: {exc.strerror or exc}")
                return
            dst.forwarded += written
            data = data[written:]
            if not data:
                return
            assert self._loop is not None
            self._loop.add_writer(dst.fd, self._writable, dst)
        dst.pending += data
        if len(dst.pending) > MAX_PENDING_BYTES:
            self._fail(f"{dst.line.device}: the {dst.name} side takes no bytes")

    def _writable(self, dst: _Side) -> None:
        assert dst.fd is not None and self._loop is not None
        try:
            written = os.write(dst.fd, dst.pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(f"{dst.line.device}: {exc.strerror or exc}")
            return
        dst.forwarded += written
        del dst.pending[:written]
        if not dst.pending:
            self._loop.remove_writer(dst.fd)
