"""What a port does with the events its protocol reports, whatever the port's mode.

A poll port, a relay and a listening tap all end here: sales are committed
to the store (store first, SPEC D6), nozzle states go to the live
:class:`~collector.nozzles.NozzleTable`, dispenser alarms and component
identities become ``alarm`` / ``nozzle`` records. Only a poll port may tell
the dispenser that a sale is safe (``confirm``); a relay or a tap never
speaks to the dispenser (SPEC D19, D20).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import structlog

from buffer.store import OrderStore, StoreError
from collector.nozzles import NozzleTable
from collector.records import alarm_record, iso, nozzle_key, order_fields
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


@dataclass(slots=True)
class PortStats:
    online: bool = False
    sales: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class PortSink:
    """Turns one port's protocol events into store records and live state."""

    def __init__(
        self,
        *,
        number: int,
        store: OrderStore,
        nozzles: NozzleTable,
        station: str,
        tz: timezone,
        on_commit: Callable[[], None],
        stats: PortStats | None = None,
    ) -> None:
        self.number = number
        self.store = store
        self.nozzles = nozzles
        self.station = station
        self.tz = tz
        self.on_commit = on_commit
        self.stats = stats if stats is not None else PortStats()
        #: Last identities seen per (address, nozzle or None): in memory only,
        #: so after a restart the first report is a snapshot, not a change.
        self._identities: dict[tuple[int, int | None], dict[str, str]] = {}

    def handle(self, events: list[Event], confirm: Callable[[Sale], None] | None = None) -> None:
        """Apply ``events``; ``confirm(sale)`` is called once a sale is committed."""
        for event in events:
            if isinstance(event, Sale):
                self._on_sale(event, confirm)
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

    def _on_sale(self, sale: Sale, confirm: Callable[[Sale], None] | None) -> None:
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
        if confirm is not None:
            confirm(sale)
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
