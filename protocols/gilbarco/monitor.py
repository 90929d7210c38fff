"""Gilbarco two-wire loop watched passively (port modes ``relay`` and ``listen``).

The station's POS or FCC is the master; the collector only watches. Bytes
in → events out, and nothing ever out: a monitor builds no request, so it
cannot write to a pump at all (SPEC D19, D20).

Directions (the conversation itself: :mod:`~protocols.gilbarco.line`):

- :meth:`GilbarcoMonitor.receive_request` — bytes the master sent (relay:
  read on the POS side): commands, and data frames after a D.
- :meth:`GilbarcoMonitor.receive_response` — bytes from the pump side
  (relay: read on the dispenser side): the loop's echo of the master's
  bytes, then the pumps' replies.
- :meth:`GilbarcoMonitor.receive_bus` — a tap on the loop: the loop is
  shared, so one receive line carries command, then reply (protocols.md
  §4). The line reader tells them apart by the conversation: a command is a
  byte below 0x70 where no reply is awaited; a reply is what the awaited
  command gets (``bus_monitor=True`` in the descriptor). The one byte that
  reads both ways, ``6p`` (status 6 / command 6), is the status while pump
  p's status is awaited.

Events, interpreted as the poller does (protocols/gilbarco/driver.py): a
status reply → :class:`~protocols.events.NozzleStatus` for the pump as a
whole (nozzle 0; an unchanged one is skipped), the running display → the
fill's amount, and a transaction with its grade's totals →
:class:`~protocols.events.Sale` with the poller's ``key`` (the store
deduplicates a sale the master read twice).

Pairing readings into a sale. The master reads as it likes — our poller
reads 4, 4, 5, 5; the FCC reads 5 on every end poll and 4 once when a
totalizer moved (lischn001.c:800-812, 1400, 1474-1477). A pump shows one finished
transaction and its totals until the next fill, so readings of a pump
between two fills belong together. Per pump the monitor keeps the distinct
transaction readings (T) and totals readings (S) of the current end, each
with how many times it came, and per grade the totals entries seen lately.
A sale T + S (S holding T's grade) is emitted once

- each came twice — for the totals, their entry for T's grade (another
  hose's totals may move meanwhile); the LRC is 4 bits, and a dropped or
  added E0 word does not change it: one reading can be a corrupted frame
  that passed, two alike cannot — or
- S minus an earlier totals entry of that grade is T's volume and money
  (two readings that agree by arithmetic; earlier entries of every grade
  are kept, so a pump that queued sales, showing totals already past some
  of them, still adds up), or
- the pump starts its next fill (8 / 9) with one T and one S entry read,
  nothing confirmed, and T's money is its price × volume (give or take a rounding):
  the master will not read them again; emitted as read (counted
  ``unconfirmed_sales``; the edge checks, SPEC A1, judge its totalizer).
  Otherwise no sale: ``unresolved`` (an error event), never a guess. So a
  sale read once and not confirmable (the first after the monitor starts,
  before any totals were seen) is recorded when that pump's next fill
  starts.

The totals carry no price, and an E0 word added inside T's price passes
the LRC and makes it ten times more: of several readings T, those whose
money is their price × volume are tried first. One that is not is still
emitted when confirmed, never dropped: the edge checks flag its amount
(SPEC A2, AMOUNT_MISMATCH).

Once the end's sale is out, a reading unlike the ones before starts a new
end (a pump that queued two sales, or a master that read across a fill
whose statuses it missed). A wrong reading can only pair with totals
already used — the same key, so nothing new (the store keeps the first).

Link state: a pump is online from its first reply; after ``offline_after``
commands to it in a row with no reply it is offline. Only pumps in
``addresses`` are reported; commands to other pumps are counted ``foreign``
(``foreign_addresses``: the pumps a re-wired line names).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, Sale
from protocols.gilbarco.codes import (
    ANSWERED,
    CMD_TOTALS,
    CMD_TRANSACTION,
    STATUS_AUTHORISED,
    STATUS_BUSY,
    STATUS_STATE,
    nibble_pump,
)
from protocols.gilbarco.driver import MAX_COMMITTED_KEYS, PUMP_NOZZLE
from protocols.gilbarco.line import (
    Command,
    DataReply,
    Echo,
    Item,
    LineReader,
    MasterData,
    Rejected,
    RunningReply,
    Source,
    StatusReply,
)
from protocols.gilbarco.messages import (
    Decimals,
    GradeTotals,
    SaleParts,
    TotalsData,
    TransactionData,
    parse_totals,
    parse_transaction,
    sale_key,
    sale_of,
    scaled,
    words_value,
)
from protocols.passive import OFFLINE_AFTER, PassiveMonitor

#: Statuses that start a new fill: the shown transaction is about to change.
FILL_STATUSES = frozenset({STATUS_AUTHORISED, STATUS_BUSY})

#: Distinct readings kept per end and kind: the real one and a few corrupted
#: ones that passed the LRC; more means the line is too noisy to pair
#: anything (the least seen is dropped).
MAX_CANDIDATES = 4

#: Totals entries kept per grade for the arithmetic: the ones before the
#: last few sales (a pump that queued sales shows totals past some of them).
MAX_HISTORY = 8


@dataclass
class _Reading:
    """A reading and how many times in a row it came alike."""

    value: TransactionData | TotalsData
    raw: bytes
    count: int = 1


def _totals(reading: _Reading) -> TotalsData:
    assert isinstance(reading.value, TotalsData)
    return reading.value


def _transaction(reading: _Reading) -> TransactionData:
    assert isinstance(reading.value, TransactionData)
    return reading.value


@dataclass
class _Watch:
    """What the monitor knows of one pump (its link: the skeleton's)."""

    t: list[_Reading] = field(default_factory=list)  # distinct readings, oldest first
    s: list[_Reading] = field(default_factory=list)
    #: Per grade, the distinct totals entries seen lately: where a sale's
    #: arithmetic may start from.
    history: dict[int, deque[GradeTotals]] = field(default_factory=dict)
    done: bool = False  # the current end's sale was emitted
    end_seen_at: datetime | None = None
    emitted: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_COMMITTED_KEYS))


class GilbarcoMonitor(PassiveMonitor):
    """Passive interpreter of one Gilbarco loop (relay or listen)."""

    name: ClassVar[str] = "gilbarco"
    _COUNTERS = (
        *("echo", "status_rx", "frames", "running_rx", "master_frames", "unsolicited"),
        *("sales", "unconfirmed_sales", "unresolved", "bad_readings", "bad_lrc"),
        *("bad_message", "truncated", "unexpected", "garbage_bytes"),
    )

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = OFFLINE_AFTER,
        volume_decimals: int = 2,
        money_decimals: int = 2,
        price_decimals: int = 2,
        volume_total_decimals: int = 2,
        money_total_decimals: int = 2,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__(addresses, offline_after=offline_after, clock=clock)
        self._watch = {a: _Watch() for a in addresses}
        self._dp = Decimals(
            volume=volume_decimals,
            money=money_decimals,
            price=price_decimals,
            volume_total=volume_total_decimals,
            money_total=money_total_decimals,
        )
        self._reader = LineReader()

    def receive_request(self, data: bytes) -> list[Event]:
        return self._take(data, "master")

    def receive_response(self, data: bytes) -> list[Event]:
        return self._take(data, "pump")

    def receive_bus(self, data: bytes) -> list[Event]:
        return self._take(data, None)

    # ------------------------------------------------------------ internals

    def _take(self, data: bytes, source: Source) -> list[Event]:
        events: list[Event] = []
        for item in self._reader.receive(data, source):
            events += self._item(item)
        return events

    def _item(self, item: Item) -> list[Event]:
        if isinstance(item, Command):
            return self._on_command(item)
        if isinstance(item, Echo):
            self._counts["echo"] += 1
            return []
        if isinstance(item, MasterData):
            self._counts["master_frames"] += 1
            return []
        if isinstance(item, Rejected):
            return self._rejected(item)
        if item.request is None:  # a reply to a command not seen: whose, we cannot tell
            self._counts["unsolicited"] += 1
            return [ProtocolError("unexpected", f"{type(item).__name__} without its command")]
        address = nibble_pump(item.request)
        events = self._reply_from(address)
        if events is None:
            return []
        watch = self._watch[address]
        if isinstance(item, StatusReply):
            self._counts["status_rx"] += 1
            events += self._on_status(address, watch, item.status)
        elif isinstance(item, RunningReply):
            self._counts["running_rx"] += 1
            money = words_value(item.words)
            if money is None:
                self._counts["bad_message"] += 1
                return [
                    *events,
                    ProtocolError("bad_message", "running display not digits", address),
                ]
            events += self._show(address, NozzleState.FUELLING, scaled(money, self._dp.money))
        else:
            self._counts["frames"] += 1
            events += self._on_frame(address, watch, item)
        return events

    def _rejected(self, item: Rejected) -> list[Event]:
        kind = item.error.kind
        if kind == "garbage":
            self._counts["garbage_bytes"] += item.size
        elif kind in self._counts:
            self._counts[kind] += 1
        address = None if item.request is None else nibble_pump(item.request)
        return [ProtocolError(kind, item.error.detail, address)]

    def _on_command(self, item: Command) -> list[Event]:
        self._counts["requests"] += 1
        if not self._known(item.pump) or item.command not in ANSWERED:
            return []
        return self._asking(item.pump)

    def _show(self, address: int, state: NozzleState, amount: Decimal | None = None) -> list[Event]:
        return self._report(NozzleStatus(address, PUMP_NOZZLE, state, amount=amount))

    def _on_status(self, address: int, watch: _Watch, status: int) -> list[Event]:
        state = STATUS_STATE.get(status)
        if state is None:  # 0 data error, D ready for data: nothing about the nozzle
            return []
        events: list[Event] = []
        if status in FILL_STATUSES:
            events += self._close(address, watch)
        elif watch.end_seen_at is None:
            watch.end_seen_at = self._clock()
        return events + self._show(address, state)

    def _on_frame(self, address: int, watch: _Watch, item: DataReply) -> list[Event]:
        kind = item.request >> 4 if item.request is not None else -1
        data: TransactionData | TotalsData | ProtocolError
        if kind == CMD_TRANSACTION:
            data = parse_transaction(item.frame.body)
            if isinstance(data, TransactionData) and data.pump != address:
                data = ProtocolError(
                    "bad_message", f"pump {data.pump}'s transaction to {address}'s 4"
                )
        elif kind == CMD_TOTALS:
            data = parse_totals(item.frame.body)
        else:
            data = ProtocolError("unexpected", f"a data frame in reply to {item.request:02X}")
        if isinstance(data, ProtocolError):
            self._counts["bad_readings"] += 1
            return [ProtocolError(data.kind, data.detail, address)]
        if isinstance(data, TotalsData):
            for entry in data.grades:
                kept = watch.history.setdefault(entry.grade, deque(maxlen=MAX_HISTORY))
                if entry not in kept:
                    kept.append(entry)
        slot: list[_Reading] = watch.t if isinstance(data, TransactionData) else watch.s
        events: list[Event] = []
        seen = next((r for r in slot if r.value == data), None)
        if seen is not None:
            seen.count += 1
        else:
            if watch.done:  # the end's sale is out: the pump shows its next one
                events += self._close(address, watch)
                slot = watch.t if isinstance(data, TransactionData) else watch.s
            slot.append(_Reading(data, item.frame.raw))
            if len(slot) > MAX_CANDIDATES:
                slot.remove(min(slot, key=lambda r: r.count))
        return events + self._try_sale(address, watch, closing=False)

    def _try_sale(self, address: int, watch: _Watch, *, closing: bool) -> list[Event]:
        """The sale of the current end once its readings are confirmed; when
        ``closing``, an unconfirmed but unambiguous one (module doc)."""
        if watch.done or not watch.t or not watch.s:
            return []
        # The totals carry no price, and an E0 word inserted in a price passes
        # the LRC: of the readings, those whose money is their price × volume
        # are tried first, the latest first; one that is not is still stored
        # when confirmed (the edge checks flag its amount, SPEC A2).
        readings = sorted(reversed(watch.t), key=lambda t: not self._plausible(_transaction(t)))
        for t in readings:
            txn = _transaction(t)
            # Totals readings agree for this sale when its grade's entry does:
            # another hose's totals may move between two readings.
            entries = [(s, _totals(s).of(txn.grade)) for s in watch.s]
            found = [(s, grade) for s, grade in entries if grade is not None]
            for s, grade in reversed(found):
                alike = sum(other.count for other, seen in found if seen == grade)
                confirmed = (t.count >= 2 and alike >= 2) or self._adds_up(watch, grade, txn)
                single = closing and len(watch.t) == 1 and len({g for _, g in found}) == 1
                if confirmed or (single and self._plausible(txn)):
                    return self._emit(address, watch, t, s, grade, confirmed)
        if closing:
            self._counts["unresolved"] += 1
            detail = f"{len(watch.t)} transaction and {len(watch.s)} totals readings disagree"
            return [ProtocolError("unresolved", detail, address)]
        return []

    def _emit(
        self,
        address: int,
        watch: _Watch,
        t: _Reading,
        s: _Reading,
        grade: GradeTotals,
        confirmed: bool,
    ) -> list[Event]:
        watch.done = True
        txn = t.value
        assert isinstance(txn, TransactionData)
        key = sale_key(txn, grade)
        if key in watch.emitted:
            return []
        watch.emitted.append(key)
        self._counts["sales"] += 1
        if not confirmed:
            self._counts["unconfirmed_sales"] += 1
        parts = SaleParts(txn, grade, t.raw + s.raw)
        sale: Sale = sale_of(address, parts, watch.end_seen_at or self._clock(), self._dp)
        return [sale]

    def _plausible(self, txn: TransactionData) -> bool:
        """Money is price × volume, give or take one money unit and the money of
        one volume unit (a pump rounds one from the other): a digit lost or
        changed in any of the three almost never keeps it so."""
        dp = self._dp
        price = scaled(txn.price, dp.price)
        slack = scaled(1, dp.money) + price * scaled(1, dp.volume)
        return abs(scaled(txn.money, dp.money) - price * scaled(txn.volume, dp.volume)) <= slack

    def _adds_up(self, watch: _Watch, grade: GradeTotals, txn: TransactionData) -> bool:
        """The grade's totalizers moved by exactly the transaction's volume and
        money since totals seen earlier for that grade."""
        seen = watch.history.get(grade.grade, ())
        return any(old != grade and self._moved_by(old, grade, txn) for old in seen)

    def _moved_by(self, old: GradeTotals, grade: GradeTotals, txn: TransactionData) -> bool:
        if old.digits[:2] != grade.digits[:2]:
            return False
        dp = self._dp
        volume = (grade.volume - old.volume) % 10 ** grade.digits[0]
        money = (grade.money - old.money) % 10 ** grade.digits[1]
        return scaled(volume, dp.volume_total) == scaled(txn.volume, dp.volume) and scaled(
            money, dp.money_total
        ) == scaled(txn.money, dp.money)

    def _close(self, address: int, watch: _Watch) -> list[Event]:
        """The end shown so far is over: its sale as read, if still owed."""
        events = self._try_sale(address, watch, closing=True)
        watch.t, watch.s = [], []
        watch.done, watch.end_seen_at = False, None
        return events
