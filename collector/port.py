"""One dispenser port in ``poll`` mode: the thin I/O around a sans-IO driver.

The port task owns the serial line and the clock; the driver owns the
protocol. Each turn: ask the driver for its next read-only request, write
it, feed what arrives until the driver has its response or the deadline
passes, hand the events on, wait the inter-poll gap.

Store first: a sale is committed to the store *before* the driver is told
it may confirm it to the dispenser (SPEC D6). If the process dies between
the two, the dispenser offers the record again and the store recognises
it by the dispenser's own key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import structlog

from buffer.store import OrderStore, StoreError
from collector.nozzles import NozzleTable
from collector.records import alarm_record, iso, nozzle_key, order_fields
from protocols.base import PollDriver
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
)

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


@dataclass(slots=True)
class PortStats:
    online: bool = False
    sales: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)


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
        #: Last identities seen per (address, nozzle or None): in memory only,
        #: so after a restart the first report is a snapshot, not a change.
        self._identities: dict[tuple[int, int | None], dict[str, str]] = {}
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
            self._handle(self.driver.receive_data(chunk))

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Sale):
                self._on_sale(event)
            elif isinstance(event, NozzleStatus):
                key = nozzle_key(self.number, event.address, event.nozzle)
                if self.nozzles.update(key, event):
                    log.debug("nozzle_state", nozzle=key, state=str(event.state))
            elif isinstance(event, PumpLink):
                self.stats.online = event.online
                self.nozzles.link(f"p{self.number:02d}.a{event.address}.", event)
                log.info("pump_link", port=self.number, address=event.address, online=event.online)
            elif isinstance(event, DeviceAlarm):
                self._on_alarm(event)
            elif isinstance(event, Identity):
                self._on_identity(event)
            elif isinstance(event, ProtocolError):
                self.stats.errors[event.kind] = self.stats.errors.get(event.kind, 0) + 1
                if event.kind != "timeout":
                    log.warning(
                        "protocol_error", port=self.number, kind=event.kind, detail=event.detail
                    )

    def _on_sale(self, sale: Sale) -> None:
        key = nozzle_key(self.number, sale.address, sale.nozzle)
        fields: dict[str, Any] = order_fields(
            sale,
            station=self.station,
            tz=self.tz,
            started_at=self.nozzles.take_started_at(key),
        )
        try:
            stored = self.store.append_order(key, fields, source_key=sale.key)
        except StoreError as exc:
            # Not committed (disk full, I/O error): do not confirm. The pump keeps
            # the record and offers it again on a later poll; nothing is lost.
            self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
            log.error("order_not_stored", nozzle=key, order_no=sale.order_no, error=str(exc))
            return
        # Only now, with the order committed, may the dispenser forget it.
        self.driver.sale_committed(sale)
        if stored is None:
            self.stats.duplicates += 1
            log.info("order_duplicate", nozzle=key, order_no=sale.order_no)
            return
        self.stats.sales += 1
        log.info("order_stored", rid=stored.rid, order_no=sale.order_no, volume=fields["volume"])
        self.on_commit()

    def _source(self, address: int, nozzle: int | None) -> str:
        if nozzle is None:
            return f"p{self.number:02d}.a{address}"
        return nozzle_key(self.number, address, nozzle)

    def _on_alarm(self, alarm: DeviceAlarm) -> None:
        """A dispenser's own alarm (SPEC D14: metering, security), raised or cleared."""
        now = datetime.now(self.tz).replace(tzinfo=None)
        detail = {"raw_code": alarm.raw_code, "text": alarm.detail}
        source = self._source(alarm.address, alarm.nozzle)
        rid, body = alarm_record(source, alarm.code, alarm.active, now, self.tz, detail)
        self._store("alarm", rid, body)
        log.warning("dispenser_alarm", source=source, code=alarm.code, active=alarm.active)

    def _on_identity(self, identity: Identity) -> None:
        """GB/T 9081 identities (SPEC D13): a ``nozzle`` record when first seen or
        changed, and COMPONENT_CHANGED (SPEC A6) when a part was swapped."""
        where = (identity.address, identity.nozzle)
        before = self._identities.get(where)
        if before == identity.components:
            return
        self._identities[where] = dict(identity.components)
        now = datetime.now(self.tz)
        source = self._source(identity.address, identity.nozzle)
        body = {
            "nozzle": source,
            "at": iso(now),
            "state": None,
            "totalizer_volume": None,
            "totalizer_amount": None,
            "components": dict(sorted(identity.components.items())),
        }
        stamp_ms = int(now.timestamp() * 1000)
        self._store("nozzle", f"{source}:components:{stamp_ms}", body)
        if before is not None:
            after = identity.components
            changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
            detail = {
                "changed": changed,
                "before": {k: before.get(k) for k in changed},
                "after": {k: after.get(k) for k in changed},
            }
            naive = now.replace(tzinfo=None)
            rid, alarm = alarm_record(source, "COMPONENT_CHANGED", True, naive, self.tz, detail)
            self._store("alarm", rid, alarm)
            log.warning("component_changed", source=source, changed=changed)

    def _store(self, kind: str, rid: str, body: dict[str, Any]) -> None:
        try:
            stored = self.store.append_record(kind, rid, body)
        except StoreError as exc:
            self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
            log.error("record_not_stored", kind=kind, rid=rid, error=str(exc))
            return
        if stored is not None:
            self.on_commit()
