"""The link against the books: each dispenser transaction against the POS's
handling of it, on a port that sees both sides (relay, listen). Sans-IO.

Events in, findings out, the clock passed in: :meth:`Reconciler.sale` (a
transaction record the dispenser reported), :meth:`Reconciler.confirmation`
(the POS confirming one), :meth:`Reconciler.pos_active` (the POS sent a
frame) and :meth:`Reconciler.tick` (time passed). ``now`` is a monotonic
second for the timeouts, ``wall`` the station's aware local time for the
daily windows. collector/station/books.py stores what comes out (store first) and
tells back what was taken. The rules, thresholds and what they do not claim
are in docs/alarms.md ("The link against the books").

Matching: a sale and its confirmation meet on (pump address, transaction
number) — :attr:`Sale.number`: Sinopec's POS_TTC (``counter``), Censtar's
record sequence number (``booking``, which its controller's 17 names; a
17 carries no values). A record the pump offers
again is the same sale (by :attr:`Sale.key`); a confirmation sent again is
counted once.

- ``SALE_UNCONFIRMED`` — a sale not confirmed within ``confirm_within_s``
  of its first report. A confirmation that comes later still counts in the
  day's balance (the finding stands: a finding is never cleared).
- ``CONFIRM_MISMATCH`` — a confirmation whose number the dispenser never
  reported (past ``start_grace_s`` after the port started: before that, the
  record may have passed while the collector was not running), or whose
  amount / volume differ from the record's.
- ``ORDER_COUNT_IMBALANCE`` — per nozzle, sales reported vs sales confirmed
  in one window (``count_window_s``, windows from local midnight), compared
  ``confirm_within_s`` after the window ends. Confirmations naming no
  reported sale count on the pump's row (``pNN.aA``).
- ``LINK_BYPASSED`` (a state) — the dispenser reports a sale while the POS
  has sent nothing for ``pos_silent_after_s``; cleared by the POS's next
  frame.

A finding about a sale (``SALE_UNCONFIRMED``, ``CONFIRM_MISMATCH``) names
its stored order (``detail.order``, the order's rid). On a tap the POS's
confirmation can come before the store's writer committed the order; such a
finding is held until :meth:`Reconciler.order_stored` names the order, at
most :data:`NAME_WAIT_S` (then it goes with ``order`` null, counted
``unnamed``: the store did not take the order, or took it in an earlier run).

Bounded: at most :data:`MAX_OPEN_SALES` sales wait for their confirmation
and :data:`MAX_REMEMBERED` settled ones are remembered per port; beyond,
the oldest is dropped and counted (``dropped``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from protocols.events import Confirmation, Sale

SALE_UNCONFIRMED = "SALE_UNCONFIRMED"
CONFIRM_MISMATCH = "CONFIRM_MISMATCH"
ORDER_COUNT_IMBALANCE = "ORDER_COUNT_IMBALANCE"
LINK_BYPASSED = "LINK_BYPASSED"

#: Sales waiting for their confirmation per port. A POS confirms within a
#: poll or two; 32 pumps × 64 records each (a Sinopec pump's journal bound
#: in our driver) is far past any honest backlog.
MAX_OPEN_SALES = 2048
#: Settled sales (confirmed or found unconfirmed) remembered per port, so a
#: record offered again or a confirmation sent again is recognised: a few
#: hours of a busy port.
MAX_REMEMBERED = 4096
#: Confirmations of unknown numbers remembered, so one repeated 3C is one finding.
MAX_UNKNOWN = 256
#: How long a finding waits for its order's rid (the writer commits within
#: milliseconds; longer means the store refused it or had it already).
NAME_WAIT_S = 10.0
#: Findings waiting for their order's rid: each is one open sale's, so this
#: is never reached while the writer works.
MAX_UNNAMED = 256


@dataclass(frozen=True, slots=True)
class BooksSettings:
    """``[books]`` in the config (docs/alarms.md)."""

    confirm_within_s: float = 120.0
    count_window_s: int = 86_400
    pos_silent_after_s: float = 60.0
    start_grace_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One alarm to store. ``rid`` is stable for the fact (stored once);
    ``raised`` is False only for a state's clear (LINK_BYPASSED)."""

    code: str
    source: str
    rid: str
    detail: dict[str, Any]
    raised: bool = True


@dataclass(slots=True)
class _Open:
    """A reported sale and what the POS did with it."""

    nozzle: str
    sale: Sale
    first_seen: float
    window: datetime
    order_rid: str | None = None
    confirmed: bool = False
    flagged: bool = False


@dataclass(slots=True)
class _Window:
    """Counts of one window, per row (a nozzle, or a pump for unknown confirmations)."""

    start: datetime
    end: datetime
    partial: bool
    reported: dict[str, int] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class Reconciler:
    """One port's sales against its POS's confirmations."""

    def __init__(self, port: int, settings: BooksSettings, now: float, wall: datetime) -> None:
        if wall.tzinfo is None:
            raise ValueError("wall must be aware (the station's local time)")
        if not 0 < settings.count_window_s <= 86_400 or 86_400 % settings.count_window_s:
            raise ValueError("count_window_s must divide a day")
        self.port = port
        self.settings = settings
        self._started = now
        self._started_wall = wall
        self._last_pos = now  # the POS is given its silence threshold from the start
        self._open: OrderedDict[tuple[int, int], _Open] = OrderedDict()
        self._settled: OrderedDict[tuple[int, int], _Open] = OrderedDict()
        self._unknown: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._windows: dict[datetime, _Window] = {}
        #: Findings waiting for their order's rid, by sale: (held since, findings).
        self._unnamed: OrderedDict[tuple[int, int], tuple[float, list[Finding]]] = OrderedDict()
        self._sales_while_silent = 0
        #: LINK_BYPASSED as stored (books.py reports what the writer took).
        self.bypassed = False
        self.counters = {"sales": 0, "confirmations": 0, "late": 0, "repeated": 0, "dropped": 0,
                         "unnamed": 0}  # fmt: skip

    # ------------------------------------------------------------ events in

    def sale(self, nozzle: str, sale: Sale, now: float, wall: datetime) -> list[Finding]:
        """A transaction record the dispenser reported (``nozzle``: its key)."""
        number = sale.number
        if number is None:
            return []  # nothing a confirmation could name
        where = (sale.address, number)
        known = self._open.get(where) or self._settled.get(where)
        if known is not None and known.sale.key == sale.key:
            return self._bypass(now)  # offered again: the same sale
        self.counters["sales"] += 1
        window = self._window(wall)
        window.reported[nozzle] = window.reported.get(nozzle, 0) + 1
        self._open[where] = _Open(nozzle, sale, now, window.start)
        self._settled.pop(where, None)  # a counter reused after a pump reset
        while len(self._open) > MAX_OPEN_SALES:
            self._open.popitem(last=False)
            self.counters["dropped"] += 1
        if now - self._last_pos >= self.settings.pos_silent_after_s:
            self._sales_while_silent += 1
        return self._bypass(now)

    def order_stored(self, address: int, counter: int, key: str, rid: str) -> list[Finding]:
        """The sale's order is committed as ``rid``: findings name it from now on,
        and those that waited for it come out."""
        where = (address, counter)
        entry = self._open.get(where) or self._settled.get(where)
        if entry is None or entry.sale.key != key:
            return []
        entry.order_rid = rid
        _, held = self._unnamed.pop(where, (0.0, []))
        return [self._named(f, rid) for f in held]

    def confirmation(self, confirmed: Confirmation, now: float, wall: datetime) -> list[Finding]:
        """The POS confirmed ``confirmed.counter`` on pump ``confirmed.address``."""
        self.counters["confirmations"] += 1
        findings = self.pos_active(now)
        where = (confirmed.address, confirmed.counter)
        entry = self._open.pop(where, None)
        if entry is None:
            settled = self._settled.get(where)
            if settled is not None and settled.confirmed:
                self.counters["repeated"] += 1
                return findings
            if settled is not None:  # flagged unconfirmed, confirmed late
                entry = settled
                self.counters["late"] += 1
        if entry is None:
            return findings + self._unknown_confirmation(confirmed, now, wall)
        entry.confirmed = True
        self._settle(where, entry)
        window = self._windows.get(entry.window)
        if window is not None:
            window.confirmed[entry.nozzle] = window.confirmed.get(entry.nozzle, 0) + 1
        differs = self._differs(entry.sale, confirmed)
        if differs:
            detail = self._sale_detail(entry)
            detail["differs"] = differs
            rid = f"{entry.nozzle}/{entry.sale.key}:{CONFIRM_MISMATCH}"
            findings += self._name(
                where, entry, Finding(CONFIRM_MISMATCH, entry.nozzle, rid, detail), now
            )
        return findings

    def pos_active(self, now: float) -> list[Finding]:
        """The POS sent a frame: it is on the line."""
        self._last_pos = now
        self._sales_while_silent = 0
        if self.bypassed:
            detail = {"pos": "back"}
            return [Finding(LINK_BYPASSED, self._port, "", detail, raised=False)]
        return []

    def tick(self, now: float, wall: datetime) -> list[Finding]:
        """Time passed: sales past their time, windows past their end."""
        findings: list[Finding] = []
        limit = self.settings.confirm_within_s
        while self._open:
            where, entry = next(iter(self._open.items()))
            if now - entry.first_seen < limit:
                break  # in order of first report: the rest are younger
            del self._open[where]
            entry.flagged = True
            self._settle(where, entry)
            detail = self._sale_detail(entry)
            # Decimal strings: the store refuses floats (canonical JSON).
            detail["waited_s"] = f"{now - entry.first_seen:.1f}"
            detail["threshold_s"] = f"{limit:g}"
            rid = f"{entry.nozzle}/{entry.sale.key}:{SALE_UNCONFIRMED}"
            findings += self._name(
                where, entry, Finding(SALE_UNCONFIRMED, entry.nozzle, rid, detail), now
            )
        while self._unnamed:
            where, (since, held) = next(iter(self._unnamed.items()))
            if now - since < NAME_WAIT_S:
                break
            del self._unnamed[where]
            self.counters["unnamed"] += len(held)
            findings += held
        for start in sorted(self._windows):
            window = self._windows[start]
            if wall < window.end + timedelta(seconds=limit):
                break
            del self._windows[start]
            findings += self._balance(window)
        return findings + self._bypass(now)

    def bypass_taken(self, raised: bool) -> None:
        """The writer took LINK_BYPASSED's raise (True) or clear (False)."""
        self.bypassed = raised

    # ------------------------------------------------------------ internals

    @property
    def _port(self) -> str:
        return f"p{self.port:02d}"

    def _bypass(self, now: float) -> list[Finding]:
        if self.bypassed or self._sales_while_silent < 1:
            return []
        silent = now - self._last_pos
        detail = {
            "pos_silent_s": f"{silent:.1f}",
            "threshold_s": f"{self.settings.pos_silent_after_s:g}",
            "sales_while_silent": self._sales_while_silent,
        }
        return [Finding(LINK_BYPASSED, self._port, "", detail)]

    def _name(
        self, where: tuple[int, int], entry: _Open, finding: Finding, now: float
    ) -> list[Finding]:
        """``finding`` now if its order is stored, else held until it is (module doc)."""
        if entry.order_rid is not None:
            return [finding]
        _, held = self._unnamed.setdefault(where, (now, []))
        held.append(finding)
        out: list[Finding] = []
        while len(self._unnamed) > MAX_UNNAMED:
            _, (_, oldest) = self._unnamed.popitem(last=False)
            self.counters["unnamed"] += len(oldest)
            out += oldest
        return out

    @staticmethod
    def _named(finding: Finding, rid: str) -> Finding:
        detail = {**finding.detail, "order": rid}
        return Finding(finding.code, finding.source, finding.rid, detail, finding.raised)

    def _settle(self, where: tuple[int, int], entry: _Open) -> None:
        self._settled[where] = entry
        self._settled.move_to_end(where)
        while len(self._settled) > MAX_REMEMBERED:
            self._settled.popitem(last=False)

    def _window(self, wall: datetime) -> _Window:
        midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        length = self.settings.count_window_s
        index = int((wall - midnight).total_seconds()) // length
        start = midnight + timedelta(seconds=index * length)
        window = self._windows.get(start)
        if window is None:
            end = start + timedelta(seconds=length)
            window = _Window(start, end, partial=start < self._started_wall)
            self._windows[start] = window
        return window

    def _unknown_confirmation(
        self, confirmed: Confirmation, now: float, wall: datetime
    ) -> list[Finding]:
        if now - self._started < self.settings.start_grace_s:
            return []  # its record may have passed before this run began
        where = (confirmed.address, confirmed.counter)
        if where in self._unknown:
            self.counters["repeated"] += 1
            return []
        self._unknown[where] = None
        while len(self._unknown) > MAX_UNKNOWN:
            self._unknown.popitem(last=False)
        pump = f"{self._port}.a{confirmed.address}"
        window = self._window(wall)
        window.confirmed[pump] = window.confirmed.get(pump, 0) + 1
        detail = {
            "reason": "never_reported",
            "address": confirmed.address,
            "pos_ttc": confirmed.counter,
            "amount": _s(confirmed.amount),
            "volume": _s(confirmed.volume),
        }
        stamp = int(wall.timestamp() * 1000)
        rid = f"{pump}:{confirmed.counter}:{stamp}:{CONFIRM_MISMATCH}"
        return [Finding(CONFIRM_MISMATCH, pump, rid, detail)]

    @staticmethod
    def _differs(sale: Sale, confirmed: Confirmation) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name, ours, theirs in (
            ("amount", sale.amount, confirmed.amount),
            ("volume", sale.volume, confirmed.volume),
        ):
            if theirs is not None and theirs != ours:
                out[name] = {"dispenser": format(ours, "f"), "pos": format(theirs, "f")}
        return out

    @staticmethod
    def _sale_detail(entry: _Open) -> dict[str, Any]:
        sale = entry.sale
        return {
            "order": entry.order_rid,
            "order_key": f"{entry.nozzle}/{sale.key}",
            "pos_ttc": sale.number,
            "amount": format(sale.amount, "f"),
            "volume": format(sale.volume, "f"),
        }

    def _balance(self, window: _Window) -> list[Finding]:
        findings = []
        for row in sorted({*window.reported, *window.confirmed}):
            reported = window.reported.get(row, 0)
            confirmed = window.confirmed.get(row, 0)
            if reported == confirmed:
                continue
            detail = {
                "from": window.start.isoformat(timespec="seconds"),
                "to": window.end.isoformat(timespec="seconds"),
                "dispenser": reported,
                "pos_confirmed": confirmed,
                "partial": window.partial,
            }
            rid = f"{row}:{window.start.isoformat(timespec='seconds')}:{ORDER_COUNT_IMBALANCE}"
            findings.append(Finding(ORDER_COUNT_IMBALANCE, row, rid, detail))
        return findings
