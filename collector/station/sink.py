"""What a port does with the events its protocol reports, whatever the port's mode.

A poll port, a relay and a listening tap all end here: sales are committed
to the store (store first, SPEC D6), nozzle states go to the live
:class:`~collector.station.nozzles.NozzleTable`, dispenser alarms and component
identities become ``alarm`` / ``nozzle`` records. Only a poll port may tell
the dispenser that a sale is safe (``confirm``); a relay or a tap never
speaks to the dispenser (SPEC D19, D20).

:meth:`PortSink.handle` is the path an event takes. A sale's is here: its
edge checks, its order to the writer, and what waits for the commit. The
rest is handed to the port's parts: ``nozzle`` records and identities
(collector/station/nozzle_records.py), alarms raised and cleared once per
episode (collector/station/port_alarms.py), the hand to the store's writer
(collector/station/port_writer.py), counters and activity
(collector/station/port_stats.py).

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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from buffer.commits import NewOrder, Outcome, Result
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
from collector.station.nozzle_records import STATE_RECORD_BURST, NozzleRecords
from collector.station.nozzles import NozzleTable
from collector.station.port_alarms import PortAlarms
from collector.station.port_stats import Activity, PortStats
from collector.station.port_writer import PortWriter
from collector.station.pulse_check import SecondSource
from collector.station.records import iso, nozzle_key, order_fields
from config import testpoints
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)

if TYPE_CHECKING:
    from collector.station.books import PortBooks

__all__ = ["STATE_RECORD_BURST", "PortSink", "PortStats"]

log = structlog.get_logger("collector.station.port")

#: Bad frames of every port: counted, and logged per port and kind once a
#: minute in full plus one summary line (collector/logs.py) — noise on a
#: line would otherwise be a warning per frame.
PROTOCOL_ERRORS = Repeats(log, "protocol_error", source_field="port")


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
    #: becomes a nozzle: see :meth:`PortAlarms.unknown_nozzle`.
    nozzles_per_pump: int | None = None

    def __post_init__(self) -> None:
        #: Last order per nozzle and last counter per pump prefix, read from
        #: the store on first use (so the checks hold across restarts).
        self._last_orders: dict[str, dict[str, Any] | None] = {}
        self._last_counters: dict[str, int | None] = {}
        self._activity = Activity()
        self._writer = PortWriter(self.store, self.tz, self.stats, self.on_commit)
        self._records = NozzleRecords(
            self.number, self.store, self.nozzles, self._writer, self.stats, self._changed
        )
        self._alarms = PortAlarms(
            self.number, self.nozzles, self._writer, self.stats, self.nozzles_per_pump
        )
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
                self._alarms.unknown_nozzle(event.address, event.nozzle, type(event).__name__)
            elif isinstance(event, NozzleStatus):
                key = nozzle_key(self.number, event.address, event.nozzle)
                self._activity.nozzle(key, event.state)
                if self.nozzles.update(key, event):
                    self._changed()
                    log.debug("nozzle_state", nozzle=key, state=str(event.state))
                    self._records.state(key)
            elif isinstance(event, PumpLink):
                self._changed()
                self._on_link(event)
            elif isinstance(event, Totals):
                self._records.totals(event)  # counts as a change only when they moved
            elif isinstance(event, DeviceAlarm):
                self._changed()
                if not self._known(event.nozzle):
                    assert event.nozzle is not None
                    self._alarms.unknown_nozzle(event.address, event.nozzle, "DeviceAlarm")
                self._alarms.device_alarm(event, self._known(event.nozzle))
            elif isinstance(event, Identity):
                self._records.identity(event)  # counts as a change only when one differs
            elif isinstance(event, ProtocolError):
                self.stats.error(event.kind)
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
            self.stats.error("parser")
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
        in the last :data:`~collector.station.port_stats.ACTIVE_HOLD_S`: the
        port polls at its busy pace."""
        return self._activity.active

    @property
    def changes(self) -> int:
        """Count of changes seen (states, sales, totals, alarms): a port
        compares it around a turn to know whether the turn moved anything."""
        return self._activity.changes

    def _changed(self) -> None:
        self._activity.changed()

    def _known(self, nozzle: int | None) -> bool:
        """A pump-wide report, or a nozzle number the port's config has."""
        limit = self.nozzles_per_pump
        return nozzle is None or limit is None or 1 <= nozzle <= limit

    def _on_link(self, link: PumpLink) -> None:
        """A pump stopped or started answering: its nozzles go offline or come
        back, with NOZZLE_OFFLINE raised and cleared once per episode (D14)."""
        prefix = f"p{self.number:02d}.a{link.address}."
        self._activity.pump_gone(prefix)
        log.info("pump_link", port=self.number, address=link.address, online=link.online)
        changed = self.nozzles.link(prefix, link)
        for key in changed:
            self._records.state(key, force=True)
        self._alarms.pump_link(prefix, link)

    def port_link(self, online: bool, reason: str = "") -> None:
        """The serial line itself failed or is back (PORT_OFFLINE, raised and
        cleared once per episode). Distinct from a silent pump (NOZZLE_OFFLINE)."""
        self._alarms.port_link(online, reason)

    def alarm(self, code: str, source: str, raised: bool, detail: dict[str, Any]) -> bool:
        """Hand one raise or clear to the store's writer; False when it was not
        taken (counted, logged): a caller holding the alarm's state leaves it
        as it was and asks again. Taken, it is committed in order."""
        return self._writer.alarm(code, source, raised, detail)

    def store_record(self, kind: str, rid: str, body: dict[str, Any]) -> bool:
        """A record of another part of the port (collector/station/books.py) to the writer."""
        return self._writer.store_record(kind, rid, body)

    # -- a sale: edge checks, the order to the writer, confirmed once committed --

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
            nozzle_uid=self._records.nozzle_uid(sale.address, sale.nozzle) if known else None,
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
        self.stats.error("store")
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
            self.stats.error("conflict")
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
            self.stats.flag(finding.code)
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
