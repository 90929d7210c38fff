"""What a port does with the events its protocol reports, whatever the port's mode.

A poll port, a relay and a listening tap all end here: sales are committed
to the store (store first, SPEC D6), nozzle states go to the live
:class:`~collector.nozzles.NozzleTable`, dispenser alarms and component
identities become ``alarm`` / ``nozzle`` records. Only a poll port may tell
the dispenser that a sale is safe (``confirm``); a relay or a tap never
speaks to the dispenser (SPEC D19, D20).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import structlog

from buffer.store import OrderStore, StoreError
from collector.edge import EdgeSettings, Finding, check_counter, check_order
from collector.identities import NOZZLE_UID, Identities, changes
from collector.logs import Repeats
from collector.nozzles import NozzleTable
from collector.records import alarm_record, decimal_str, iso, nozzle_key, order_fields
from config import testpoints
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)

log = structlog.get_logger("collector.port")

#: Bad frames of every port: counted, and logged per port and kind once a
#: minute in full plus one summary line (collector/logs.py) — noise on a
#: line would otherwise be a warning per frame.
PROTOCOL_ERRORS = Repeats(log, "protocol_error", source_field="port")

#: State-change ``nozzle`` records per nozzle: a burst of this many, then
#: one per :data:`STATE_RECORD_EVERY_S`. A sale is three changes (lifted,
#: fuelling, idle) and takes a minute or more, so honest traffic never
#: reaches the bound; a nozzle flapping on a bad contact (or a driver bug)
#: cannot fill the store. Suppressed changes are counted (stats.errors).
STATE_RECORD_BURST = 30
STATE_RECORD_EVERY_S = 1.0

#: After a change (a nozzle's state, a sale) the port stays at its busy pace
#: this long: the confirmation, the pump's next queued record and the
#: several reads some protocols need to fetch one sale go at once, not at
#: the idle pace.
ACTIVE_HOLD_S = 3.0

BUSY_STATES = frozenset({NozzleState.LIFTED, NozzleState.FUELLING})


@dataclass(slots=True)
class PortStats:
    online: bool = False
    sales: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)  # edge findings by code


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
        edge: EdgeSettings | None = None,
    ) -> None:
        self.number = number
        self.store = store
        self.nozzles = nozzles
        self.station = station
        self.tz = tz
        self.on_commit = on_commit
        self.stats = stats if stats is not None else PortStats()
        self.edge = edge if edge is not None else EdgeSettings()
        #: Last order per nozzle and last counter per pump prefix, read from
        #: the store on first use (so the checks hold across restarts).
        self._last_orders: dict[str, dict[str, Any] | None] = {}
        self._last_counters: dict[str, int | None] = {}
        #: Pumps (prefix) and nozzles with NOZZLE_OFFLINE raised (D14).
        self._offline: set[str] = set()
        self._port_offline = False
        self._record_ms: dict[str, int] = {}  # last rid stamp per source
        self._busy: set[str] = set()  # nozzles lifted or fuelling now
        self._last_change = float("-inf")  # monotonic time of the last change seen
        #: Count of changes seen (states, sales, totals, alarms): a port
        #: compares it around a turn to know whether the turn moved anything.
        self.changes = 0
        self._tokens: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        #: Last identity stored per pump / nozzle (read from the store on first
        #: use): orders carry the nozzle's uid from it; reports compare with it.
        self._identities = Identities(store)

    def handle(self, events: list[Event], confirm: Callable[[Sale], None] | None = None) -> None:
        """Apply ``events``; ``confirm(sale)`` is called once a sale is committed."""
        for event in events:
            if isinstance(event, Sale):
                self._on_sale(event, confirm)
            elif isinstance(event, NozzleStatus):
                key = nozzle_key(self.number, event.address, event.nozzle)
                if event.state in BUSY_STATES:
                    self._busy.add(key)
                else:
                    self._busy.discard(key)
                if self.nozzles.update(key, event):
                    self._changed()
                    log.debug("nozzle_state", nozzle=key, state=str(event.state))
                    self._state_record(key)
            elif isinstance(event, PumpLink):
                self._changed()
                self._on_link(event)
            elif isinstance(event, Totals):
                self._on_totals(event)  # counts as a change only when they moved
            elif isinstance(event, DeviceAlarm):
                self._changed()
                self._on_alarm(event)
            elif isinstance(event, Identity):
                self._on_identity(event)  # counts as a change only when one differs
            elif isinstance(event, ProtocolError):
                self.stats.errors[event.kind] = self.stats.errors.get(event.kind, 0) + 1
                if event.kind != "timeout":
                    PROTOCOL_ERRORS.add(event.kind, self.number, detail=event.detail)

    def parse_guarded(self, parse: Callable[[bytes], list[Event]], data: bytes, code: str) -> bool:
        """Parse ``data`` and handle the events; a parser that raises is
        counted, logged with its traceback and alarmed as ``code`` (raised
        once), and False tells the passive port to stop parsing: its bytes
        must never depend on the parser (relay, listen; D19, D20)."""
        try:
            events = parse(data)
        except Exception as exc:
            self.stats.errors["parser"] = self.stats.errors.get("parser", 0) + 1
            log.exception("parser_failed", port=self.number, code=code)
            detail = {"error": f"{type(exc).__name__}: {exc}"}
            self.alarm(code, f"p{self.number:02d}", True, detail)
            return False
        self.handle(events)
        return True

    @property
    def active(self) -> bool:
        """A nozzle is lifted or fuelling, or something changed (a state, a sale)
        in the last :data:`ACTIVE_HOLD_S`: the port polls at its busy pace."""
        return bool(self._busy) or time.monotonic() - self._last_change < ACTIVE_HOLD_S

    def _changed(self) -> None:
        self.changes += 1
        self._last_change = time.monotonic()

    def _on_sale(self, sale: Sale, confirm: Callable[[Sale], None] | None) -> None:
        self._changed()
        key = nozzle_key(self.number, sale.address, sale.nozzle)
        pump = f"p{self.number:02d}.a{sale.address}."
        fields: dict[str, Any] = order_fields(
            sale,
            station=self.station,
            tz=self.tz,
            started_at=self.nozzles.take_started_at(key, sale.ended_at.replace(tzinfo=self.tz)),
            nozzle_uid=self._nozzle_uid(sale.address, sale.nozzle),
        )
        try:
            findings = check_order(fields, self._last_order(key), self.edge)
            if sale.counter is not None:
                findings += check_counter(sale.counter, self._last_counter(pump))
            fields["flags"] = [f.code for f in findings]
            stored = self.store.append_order(key, fields, source_key=sale.key)
        except StoreError as exc:
            # Not committed (disk full, I/O error): do not confirm. The pump keeps
            # the record and offers it again on a later poll; nothing is lost.
            self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
            log.error("order_not_stored", nozzle=key, order_no=sale.order_no, error=str(exc))
            return
        # Only now, with the order committed, may the dispenser forget it.
        if testpoints.active:
            testpoints.reached("order_committed")
        if confirm is not None:
            confirm(sale)
        if testpoints.active:
            testpoints.passed("order_committed")
        if stored is None:
            self.stats.duplicates += 1
            log.info("order_duplicate", nozzle=key, order_no=sale.order_no)
            return
        self.stats.sales += 1
        self._last_orders[key] = stored.body
        if sale.counter is not None:
            self._last_counters[pump] = sale.counter
        nozzle = self.nozzles.get(key)
        if sale.totalizer_volume_end is not None:
            nozzle.totalizer_volume = sale.totalizer_volume_end
        if sale.totalizer_amount_end is not None:
            nozzle.totalizer_amount = sale.totalizer_amount_end
        nozzle.grade, nozzle.price = sale.grade, sale.price
        log.info("order_stored", rid=stored.rid, order_no=sale.order_no, volume=fields["volume"])
        self.on_commit()
        for finding in findings:
            self._finding_alarm(key, stored.rid, finding)

    def _last_order(self, key: str) -> dict[str, Any] | None:
        if key not in self._last_orders:
            self._last_orders[key] = self.store.last_order(key)
        return self._last_orders[key]

    def _last_counter(self, pump: str) -> int | None:
        if pump not in self._last_counters:
            last = self.store.last_order_under(pump)
            order_no = None if last is None else str(last.get("order_no"))
            digits = order_no is not None and order_no.isascii() and order_no.isdigit()
            self._last_counters[pump] = int(order_no) if digits and order_no else None
        return self._last_counters[pump]

    def _finding_alarm(self, key: str, order_rid: str, finding: Finding) -> None:
        """An edge finding as an alarm (raised; a finding is an event, never
        cleared), its rid tied to the order so it is stored once."""
        self.stats.flags[finding.code] = self.stats.flags.get(finding.code, 0) + 1
        body = {
            "code": finding.code,
            "state": "raised",
            "source": key,
            "at": iso(datetime.now(self.tz)),
            "detail": {**finding.detail, "order": order_rid},
        }
        self._store("alarm", f"{order_rid}:{finding.code}", body)
        log.warning("order_flagged", rid=order_rid, code=finding.code, **finding.detail)

    # -- live nozzle state (SPEC D2, D14) -----------------------------------------

    def _rid(self, source: str, what: str) -> tuple[str, datetime]:
        """A unique rid for a snapshot of ``source`` now (ms, bumped on a tie)."""
        now = datetime.now(self.tz)
        ms = max(int(now.timestamp() * 1000), self._record_ms.get(source, 0) + 1)
        self._record_ms[source] = ms
        return f"{source}:{what}:{ms}", now

    def _allow(self, key: str) -> bool:
        """Token bucket per nozzle for state records (STATE_RECORD_BURST)."""
        now = time.monotonic()
        tokens, at = self._tokens.get(key, (float(STATE_RECORD_BURST), now))
        tokens = min(float(STATE_RECORD_BURST), tokens + (now - at) / STATE_RECORD_EVERY_S)
        if tokens < 1:
            self._tokens[key] = (tokens, now)
            self.stats.errors["state_suppressed"] = self.stats.errors.get("state_suppressed", 0) + 1
            return False
        self._tokens[key] = (tokens - 1, now)
        return True

    def _state_record(self, key: str, *, force: bool = False) -> None:
        """A ``nozzle`` record: the nozzle's state and totalizers now."""
        if not force and not self._allow(key):
            return
        nozzle = self.nozzles.get(key)
        rid, now = self._rid(key, "state")
        body = {
            "nozzle": key,
            "at": iso(now),
            "state": str(nozzle.state),
            "totalizer_volume": decimal_str(nozzle.totalizer_volume),
            "totalizer_amount": decimal_str(nozzle.totalizer_amount),
            "components": None,
        }
        self._store("nozzle", rid, body)

    def _on_totals(self, totals: Totals) -> None:
        """Totalizers read on their own: a snapshot record when they moved."""
        key = nozzle_key(self.number, totals.address, totals.nozzle)
        nozzle = self.nozzles.get(key)
        if (nozzle.totalizer_volume, nozzle.totalizer_amount) == (totals.volume, totals.amount):
            return
        self._changed()
        nozzle.totalizer_volume, nozzle.totalizer_amount = totals.volume, totals.amount
        self._state_record(key, force=True)

    def _on_link(self, link: PumpLink) -> None:
        """A pump stopped or started answering: its nozzles go offline or come
        back, with NOZZLE_OFFLINE raised and cleared once per episode (D14)."""
        prefix = f"p{self.number:02d}.a{link.address}."
        self._busy = {k for k in self._busy if not k.startswith(prefix)}
        log.info("pump_link", port=self.number, address=link.address, online=link.online)
        changed = self.nozzles.link(prefix, link)
        for key in changed:
            self._state_record(key, force=True)
        # Per nozzle where the nozzles are known, else for the pump itself.
        sources = self.nozzles.keys_under(prefix) or [prefix[:-1]]
        for source in sources:
            if link.online == (source not in self._offline):
                continue
            if link.online:
                self._offline.discard(source)
            else:
                self._offline.add(source)
            self.alarm("NOZZLE_OFFLINE", source, not link.online, {"address": link.address})
        if link.online:  # a pump-level alarm raised before its nozzles were known
            pump = prefix[:-1]
            if pump in self._offline:
                self._offline.discard(pump)
                self.alarm("NOZZLE_OFFLINE", pump, False, {"address": link.address})

    def port_link(self, online: bool, reason: str = "") -> None:
        """The serial line itself failed or is back (PORT_OFFLINE, raised and
        cleared once per episode). Distinct from a silent pump (NOZZLE_OFFLINE)."""
        if online != self._port_offline:
            return
        self._port_offline = not online
        detail: dict[str, Any] = {"reason": reason} if reason else {}
        self.alarm("PORT_OFFLINE", f"p{self.number:02d}", not online, detail)

    def alarm(self, code: str, source: str, raised: bool, detail: dict[str, Any]) -> bool:
        """Store one raise or clear; False when the store refused it (counted,
        logged): a caller holding the alarm's state undoes it and tries again."""
        now = datetime.now(self.tz).replace(tzinfo=None)
        rid, body = alarm_record(source, code, raised, now, self.tz, detail)
        stored = self._store("alarm", rid, body)
        log.warning("alarm", code=code, source=source, raised=raised, **detail)
        return stored

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
        changed, and NOZZLE_UID_CHANGED / COMPONENT_CHANGED when one differs
        from the identity last stored (SPEC A6; collector/identities.py).

        Store first: the alarms, then the record, and only then is the new
        identity the one orders carry and later reads compare with. A refusal
        keeps the old one, so the next read tries again (an alarm already
        stored may then be stored twice: never lost)."""
        where = (identity.address, identity.nozzle)
        source = self._source(identity.address, identity.nozzle)
        before, after = self._identities.known(where, source), dict(identity.components)
        if before == after:
            return
        self._changed()
        now = datetime.now(self.tz)
        stored = True
        for code, detail in [] if before is None else changes(before, after):
            naive = now.replace(tzinfo=None)
            rid, alarm = alarm_record(source, code, True, naive, self.tz, detail)
            stored = self._store("alarm", rid, alarm) and stored
            log.warning("identity_changed", source=source, code=code)
        body = {
            "nozzle": source,
            "at": iso(now),
            "state": None,
            "totalizer_volume": None,
            "totalizer_amount": None,
            "components": dict(sorted(after.items())),
        }
        stamp_ms = int(now.timestamp() * 1000)
        if stored and self._store("nozzle", f"{source}:components:{stamp_ms}", body):
            self._identities.stored(where, after)

    def _nozzle_uid(self, address: int, nozzle: int) -> str | None:
        """The nozzle's unique ID as last stored; None before its first identity
        read (or on a protocol that carries none)."""
        source = self._source(address, nozzle)
        known = self._identities.known((address, nozzle), source)
        return None if known is None else known.get(NOZZLE_UID)

    def _store(self, kind: str, rid: str, body: dict[str, Any]) -> bool:
        """True once the record is in the store (now, or already: a duplicate)."""
        try:
            stored = self.store.append_record(kind, rid, body)
        except StoreError as exc:
            self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
            log.error("record_not_stored", kind=kind, rid=rid, error=str(exc))
            return False
        if stored is not None:
            self.on_commit()
        return True
