"""What a port does with the events its protocol reports, whatever the port's mode.

A poll port, a relay and a listening tap all end here: sales are committed
to the store (store first, SPEC D6), nozzle states go to the live
:class:`~collector.station.nozzles.NozzleTable`, dispenser alarms and component
identities become ``alarm`` / ``nozzle`` records. Only a poll port may tell
the dispenser that a sale is safe (``confirm``); a relay or a tap never
speaks to the dispenser (SPEC D19, D20).

Records go to the store's writer (buffer/writer.py), never straight to
SQLite: nothing here waits for a commit in a port's read callback. What
depends on a record happens in its ``then``, once committed — a sale is
confirmed there, its findings alarmed there. A state the sink keeps itself
(PORT_OFFLINE, NOZZLE_OFFLINE, the last identity) advances when the writer
took its record: the writer commits what it took in order and never drops
it, so a raise is always stored before its clear; a record not taken (the
writer's queue full while the store refuses) leaves the state as it was.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from buffer.commits import Item, NewOrder, NewRecord, Outcome, Result
from buffer.store import OrderStore, StoreError
from collector.logs import Repeats
from collector.station.edge import (
    EdgeSettings,
    Finding,
    SaleTimes,
    check_counter,
    check_order,
    check_plausible,
)
from collector.station.identities import NOZZLE_UID, Identities, changes
from collector.station.nozzles import NozzleTable
from collector.station.pulse_check import SecondSource
from collector.station.records import alarm_record, decimal_str, iso, nozzle_key, order_fields
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

if TYPE_CHECKING:
    from collector.station.books import PortBooks

log = structlog.get_logger("collector.station.port")

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


@dataclass(eq=False, kw_only=True)
class PortSink:
    """Turns one port's protocol events into store records and live state."""

    number: int
    store: OrderStore
    nozzles: NozzleTable
    station: str
    tz: timezone
    on_commit: Callable[[], None]
    stats: PortStats = field(default_factory=PortStats)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    protocol: str = ""
    #: Nozzles of each pump are numbered 1..this (the port's ``nozzles``);
    #: None: any number is a nozzle (tools, tests). Another number never
    #: becomes a nozzle: see :meth:`_unknown_nozzle`.
    nozzles_per_pump: int | None = None

    def __post_init__(self) -> None:
        self._unknown_seen: set[tuple[int, int]] = set()  # NOZZLE_UNKNOWN alarmed
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
        self._identities = Identities(self.store)
        #: Signals beside the dispenser's (collector/station/gpio_inputs.py), asked for
        #: each sale's flags before it is stored; None: none are wired.
        self.second_source: SecondSource | None = None
        #: Sales handed to the writer and not decided yet, by (nozzle, key): a
        #: pump offering one again meanwhile is not queued twice.
        self._deciding: set[tuple[str, str]] = set()
        #: A relay's or tap's reconciliation with the POS (collector/station/books.py),
        #: fed every batch parsed and every order stored; None on a poll port.
        self.books: PortBooks | None = None

    def handle(self, events: list[Event], confirm: Callable[[Sale], None] | None = None) -> None:
        """Apply ``events``; ``confirm(sale)`` is called once a sale is committed."""
        for event in events:
            if isinstance(event, Sale):
                self._on_sale(event, confirm)
            elif isinstance(event, NozzleStatus | Totals | Identity) and not self._known(
                event.nozzle
            ):
                assert event.nozzle is not None  # a pump-wide one is always known
                self._unknown_nozzle(event.address, event.nozzle, type(event).__name__)
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
                if not self._known(event.nozzle):
                    assert event.nozzle is not None
                    self._unknown_nozzle(event.address, event.nozzle, "DeviceAlarm")
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
        if self.books is not None:
            self.books.observe(events)
        return True

    @property
    def active(self) -> bool:
        """A nozzle is lifted or fuelling, or something changed (a state, a sale)
        in the last :data:`ACTIVE_HOLD_S`: the port polls at its busy pace."""
        return bool(self._busy) or time.monotonic() - self._last_change < ACTIVE_HOLD_S

    def _changed(self) -> None:
        self.changes += 1
        self._last_change = time.monotonic()

    def _known(self, nozzle: int | None) -> bool:
        """A pump-wide report, or a nozzle number the port's config has."""
        limit = self.nozzles_per_pump
        return nozzle is None or limit is None or 1 <= nozzle <= limit

    def _unknown_nozzle(self, address: int, nozzle: int, what: str) -> None:
        """A report naming a nozzle the pump does not have (a misread, a wrong
        ``nozzles``): it creates no nozzle — no live state, no chain, no
        NOZZLE_OFFLINE of its own. NOZZLE_UNKNOWN on the pump, once per number
        per run (bounded: 256 numbers per pump); counted every time."""
        self.stats.errors["nozzle_unknown"] = self.stats.errors.get("nozzle_unknown", 0) + 1
        if (address, nozzle) in self._unknown_seen:
            return
        detail = {"nozzle": nozzle, "nozzles": self.nozzles_per_pump, "report": what}
        if self.alarm("NOZZLE_UNKNOWN", f"p{self.number:02d}.a{address}", True, detail):
            self._unknown_seen.add((address, nozzle))

    def _on_sale(self, sale: Sale, confirm: Callable[[Sale], None] | None) -> None:
        self._changed()
        pump = f"p{self.number:02d}.a{sale.address}."
        received_at = datetime.now(self.tz)
        known = self._known(sale.nozzle)
        if known:
            key, source_key = nozzle_key(self.number, sale.address, sale.nozzle), sale.key
        else:
            # Stored, never dropped, under the pump's own key (one chain per
            # configured pump, whatever number the frame said), its number in
            # the source key and the finding: no new nozzle identity.
            key, source_key = pump[:-1], f"n{sale.nozzle}:{sale.key}"
        if (key, source_key) in self._deciding:
            return  # offered again before its commit: confirmed once that is done
        ended_at = sale.ended_at.replace(tzinfo=self.tz)
        started_at = self.nozzles.take_started_at(key, ended_at) if known else None
        hung_up_at = self.nozzles.take_hung_up_at(key, received_at) if known else None
        fields: dict[str, Any] = order_fields(
            sale,
            station=self.station,
            tz=self.tz,
            started_at=started_at,
            nozzle_uid=self._nozzle_uid(sale.address, sale.nozzle) if known else None,
        )
        try:
            # The pump's chain holds sales of several numbers: no continuity.
            previous = self._last_order(key) if known else None
            findings = check_order(fields, previous, self.edge)
            if sale.counter is not None:
                findings += check_counter(sale.counter, self._last_counter(pump))
            if self.second_source is not None:
                findings += self.second_source.findings(key, fields)
        except StoreError as exc:  # the references cannot be read now: checked next offer
            self._not_stored(key, sale, started_at, str(exc))
            return
        # The flow check measures the fill only when its start was seen.
        whole = started_at if known and self.nozzles.lift_from_idle(key) else None
        times = SaleTimes(ended_at, received_at, whole, hung_up_at)
        findings += check_plausible(fields, times, self.edge, self.protocol)
        if not known:
            detail = {"nozzle": sale.nozzle, "nozzles": self.nozzles_per_pump}
            findings.append(Finding("NOZZLE_UNKNOWN", detail))
        fields["flags"] = [f.code for f in findings]
        head = {"state": "raised", "source": key, "at": iso(received_at)}
        alarms = tuple((f.code, {"code": f.code, **head, "detail": f.detail}) for f in findings)

        def then(outcome: Outcome) -> None:
            self._deciding.discard((key, source_key))
            self._sale_decided(sale, key, pump, fields, findings, outcome, confirm, started_at)

        # A poll port's pump keeps the sale until confirmed: if the store cannot
        # take it now, it is handed back and the pump offers it again. The
        # findings' alarms are committed in the order's own transaction.
        item = NewOrder(key, fields, source_key, alarms)
        if self.store.writer.submit(item, then, source_keeps=confirm is not None):
            self._deciding.add((key, source_key))
        else:
            self._not_stored(key, sale, started_at, "the store's queue is full")

    def _not_stored(self, key: str, sale: Sale, started_at: datetime | None, error: str) -> None:
        """Not committed (disk full, I/O error): nothing is confirmed. A pump keeps
        the record and offers it again on a later poll; nothing is lost."""
        self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
        self.nozzles.put_back_started_at(key, started_at)
        log.error("order_not_stored", nozzle=key, order_no=sale.order_no, error=error)

    def _sale_decided(
        self,
        sale: Sale,
        key: str,
        pump: str,
        fields: dict[str, Any],
        findings: list[Finding],
        outcome: Outcome,
        confirm: Callable[[Sale], None] | None,
        started_at: datetime | None,
    ) -> None:
        if not outcome.kept:
            self._not_stored(key, sale, started_at, outcome.detail)
            return
        # Only now, with the order committed, may the dispenser forget it.
        if testpoints.active:
            testpoints.reached("order_committed")
        if confirm is not None:
            confirm(sale)
        if testpoints.active:
            testpoints.passed("order_committed")
        if outcome.result is Result.CONFLICT:
            # Another sale holds its key; this one is kept in the store's
            # RECORD_REFUSED alarm, so the pump may forget it too.
            self.stats.errors["conflict"] = self.stats.errors.get("conflict", 0) + 1
            log.error("order_conflict", nozzle=key, order_no=sale.order_no, error=outcome.detail)
            return
        stored = outcome.record
        if stored is None:
            self.stats.duplicates += 1
            log.info("order_duplicate", nozzle=key, order_no=sale.order_no)
            return
        self.stats.sales += 1
        self._last_orders[key] = stored.body
        if sale.counter is not None:
            self._last_counters[pump] = sale.counter
        if self._known(sale.nozzle):  # a number the pump lacks gets no live state
            nozzle = self.nozzles.get(key)
            if sale.totalizer_volume_end is not None:
                nozzle.totalizer_volume = sale.totalizer_volume_end
            if sale.totalizer_amount_end is not None:
                nozzle.totalizer_amount = sale.totalizer_amount_end
            nozzle.grade, nozzle.price = sale.grade, sale.price
        log.info("order_stored", rid=stored.rid, order_no=sale.order_no, volume=fields["volume"])
        if self.books is not None:
            self.books.order_stored(sale, stored.rid)
        self.on_commit()
        for finding in findings:  # their alarms were committed with the order
            self.stats.flags[finding.code] = self.stats.flags.get(finding.code, 0) + 1
            log.warning("order_flagged", rid=stored.rid, code=finding.code, **finding.detail)

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

    # -- live nozzle state (SPEC D2, D14) -----------------------------------------

    def _rid(self, source: str, what: str) -> tuple[str, datetime]:
        """A unique rid for a snapshot of ``source`` now (ms, bumped on a tie)."""
        now = self._stamp(source)
        return f"{source}:{what}:{int(now.timestamp() * 1000)}", now

    def _stamp(self, key: str) -> datetime:
        """Now, at least 1 ms after the last stamp of ``key``: two transitions
        handed to the writer in one millisecond (an episode that ends as it
        begins) get two rids, never one record "already stored"."""
        now = datetime.now(self.tz)
        ms = int(now.timestamp() * 1000)
        last = self._record_ms.get(key, 0)
        if ms <= last:
            ms = last + 1
            now = datetime.fromtimestamp(ms / 1000, self.tz)
        self._record_ms[key] = ms
        return now

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
            if not self.alarm("NOZZLE_OFFLINE", source, not link.online, {"address": link.address}):
                continue  # not taken (counted): the state stays as the store knows it
            if link.online:
                self._offline.discard(source)
            else:
                self._offline.add(source)
        if link.online:  # a pump-level alarm raised before its nozzles were known
            pump = prefix[:-1]
            if pump in self._offline and self.alarm(
                "NOZZLE_OFFLINE", pump, False, {"address": link.address}
            ):
                self._offline.discard(pump)

    def port_link(self, online: bool, reason: str = "") -> None:
        """The serial line itself failed or is back (PORT_OFFLINE, raised and
        cleared once per episode). Distinct from a silent pump (NOZZLE_OFFLINE)."""
        if online != self._port_offline:
            return
        detail: dict[str, Any] = {"reason": reason} if reason else {}
        # Not taken: the state stays, and the supervisor's next open or failure asks again.
        if self.alarm("PORT_OFFLINE", f"p{self.number:02d}", not online, detail):
            self._port_offline = not online

    def alarm(self, code: str, source: str, raised: bool, detail: dict[str, Any]) -> bool:
        """Hand one raise or clear to the store's writer; False when it was not
        taken (counted, logged): a caller holding the alarm's state leaves it
        as it was and asks again. Taken, it is committed in order."""
        now = self._stamp(f"{source}:{code}").replace(tzinfo=None)
        rid, body = alarm_record(source, code, raised, now, self.tz, detail)
        taken = self._store("alarm", rid, body)
        log.warning("alarm", code=code, source=source, raised=raised, taken=taken, **detail)
        return taken

    def _source(self, address: int, nozzle: int | None) -> str:
        if nozzle is None:
            return f"p{self.number:02d}.a{address}"
        return nozzle_key(self.number, address, nozzle)

    def _on_alarm(self, alarm: DeviceAlarm) -> None:
        """A dispenser's own alarm (SPEC D14: metering, security), raised or cleared."""
        detail: dict[str, Any] = {"raw_code": alarm.raw_code, "text": alarm.detail}
        if self._known(alarm.nozzle):
            source = self._source(alarm.address, alarm.nozzle)
        else:  # kept, on the pump: a number it lacks makes no nozzle
            source, detail["nozzle"] = self._source(alarm.address, None), alarm.nozzle
        now = self._stamp(f"{source}:{alarm.code}").replace(tzinfo=None)
        rid, body = alarm_record(source, alarm.code, alarm.active, now, self.tz, detail)
        self._store("alarm", rid, body)
        log.warning("dispenser_alarm", source=source, code=alarm.code, active=alarm.active)

    def _on_identity(self, identity: Identity) -> None:
        """GB/T 9081 identities (SPEC D13): a ``nozzle`` record when first seen or
        changed, and NOZZLE_UID_CHANGED / COMPONENT_CHANGED when one differs
        from the identity last stored (SPEC A6; collector/station/identities.py).

        Store first: the alarms and the record go to the writer together, and
        only once it has taken them is the new identity the one later orders
        carry (the writer commits in order: those orders after it) and later
        reads compare with. Not taken: the old one stays, and the next read
        finds the same change again."""
        where = (identity.address, identity.nozzle)
        source = self._source(identity.address, identity.nozzle)
        before, after = self._identities.known(where, source), dict(identity.components)
        if before == after:
            return
        self._changed()
        now = datetime.now(self.tz)
        items: list[Item] = []
        for code, detail in [] if before is None else changes(before, after):
            naive = now.replace(tzinfo=None)
            rid, alarm = alarm_record(source, code, True, naive, self.tz, detail)
            items.append(NewRecord("alarm", rid, alarm))
            log.warning("identity_changed", source=source, code=code)
        body = {
            "nozzle": source,
            "at": iso(now),
            "state": None,
            "totalizer_volume": None,
            "totalizer_amount": None,
            "components": dict(sorted(after.items())),
        }
        # Two reads within a millisecond (one batch of events) differ by what
        # they say: the id names both, so the second is not taken for a repeat.
        stamp_ms = int(now.timestamp() * 1000)
        said = zlib.crc32(repr(body["components"]).encode())
        items.append(NewRecord("nozzle", f"{source}:components:{stamp_ms}:{said:08x}", body))
        if self.store.writer.submit_all(items, self._decided):
            self._identities.stored(where, after)
        else:
            self._not_taken(items)

    def _nozzle_uid(self, address: int, nozzle: int) -> str | None:
        """The nozzle's unique ID as last stored; None before its first identity
        read (or on a protocol that carries none)."""
        source = self._source(address, nozzle)
        known = self._identities.known((address, nozzle), source)
        return None if known is None else known.get(NOZZLE_UID)

    def store_record(self, kind: str, rid: str, body: dict[str, Any]) -> bool:
        """A record of another part of the port (collector/station/books.py) to the writer."""
        return self._store(kind, rid, body)

    def _store(self, kind: str, rid: str, body: dict[str, Any]) -> bool:
        """Hand a record to the store's writer; True once taken (it is then
        committed in order, or already stored: a duplicate)."""
        items: list[Item] = [NewRecord(kind, rid, body)]
        if self.store.writer.submit_all(items, self._decided):
            return True
        self._not_taken(items)
        return False

    def _not_taken(self, items: list[Item]) -> None:
        self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
        log.error("record_not_taken", kinds=[i.kind for i in items], keys=[i.key for i in items])

    def _decided(self, outcomes: list[Outcome]) -> None:
        if any(o.result is Result.STORED for o in outcomes):
            self.on_commit()
        for o in outcomes:
            if not o.kept:  # a body the store can never take (a bug): said, counted
                self.stats.errors["store"] = self.stats.errors.get("store", 0) + 1
                log.error("record_not_stored", error=o.detail)
