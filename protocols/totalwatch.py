"""The passive side shared by the families keyed by totals (CK1313, Lanfeng), sans-IO.

A family's monitor (port modes ``relay`` and ``listen``) frames the bytes
and says, for each frame, which pump asked or answered what; this base
(:class:`TotalsMonitor`) turns those exchanges into events. It never builds
a byte (SPEC D19, D20).

Requests (``_on_request``): a pump not in ``addresses`` is ``foreign``;
after ``offline_after`` requests to a pump in a row with no reply it is
reported offline (:class:`PumpLink`), online again at its next reply.

Replies (``_on_reply``) carry a parsed reply: ``state`` when it reports one
(a :class:`NozzleStatus` when it changes), ``part()`` for a reading.

Reading a sale. The POS reads a pump's totals, then the sale it shows, then
its price (:attr:`TotalsMonitor.STEPS`, the FCC's order at a sale's end).
A reading is those steps in **consecutive** exchanges with one pump: in
relay, the POS asked that pump nothing else in between (the same question
again after a spoilt reply is fine); with replies only, that pump replied
nothing else; and, until the sale is in, no spoilt or unplaceable bytes
came on either pair (:meth:`TotalsMonitor._lost`: a lost frame may have
been that pump's other question or reply), but for a spoilt reply to the
very question the reading waits for. Otherwise totals read long ago could
be paired with a sale much later. A
step reply that shows the pump busy abandons the reading. A reading that
has all but the price when its pump's next exchange is something else is
completed with the last price seen (a POS that skips the price read).

Complete readings go through :class:`protocols.totalsale.SaleCheck`: the
totals difference, a repeated reading, or — the first sale seen, right
after the monitor saw that pump go idle after a fill — the price relation;
else held for the next sale's check, or rejected (counted). Sales carry
the poll driver's key, so the store keeps one record whoever read it.
``ended_at`` is when the monitor saw the pump idle after the fill, else
when the reading completed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from protocols.events import Event, NozzleState, NozzleStatus
from protocols.passive import ScaledMonitor
from protocols.totalpoll import BUSY, Reply
from protocols.totalsale import NOZZLE, Reading, SaleCheck, sale_of

_TOTALS = ("volume_total", "amount_total")
_FIELDS = (*_TOTALS, "volume", "amount", "price")


@dataclass
class _Watch:
    state: NozzleState | None = None
    totals: tuple[int, int] | None = None  # last Totals reported
    price: int | None = None  # last price seen
    step: int = 0  # steps of the reading under way done (0: none)
    parts: dict[str, int] = field(default_factory=dict)
    raw: bytearray = field(default_factory=bytearray)
    end_seen_at: datetime | None = None  # the pump went idle after a fill, seen then
    held_at: datetime | None = None  # when the held reading (SaleCheck) completed


class TotalsMonitor(ScaledMonitor):
    """Events from the exchanges a family's monitor decodes (module doc); link
    state, foreign pumps, counters and decimals: :class:`protocols.passive.ScaledMonitor`."""

    _COUNTERS = (
        *("changing", "ambiguous", "unexpected", "sales", "held", "rejected", "rereads"),
        "no_price",
    )
    #: The commands of one reading, in order: totals first.
    STEPS: ClassVar[tuple[int, ...]]
    #: Digits of a totalizer on the wire (``order_no`` and the key).
    TOTAL_DIGITS: ClassVar[int]

    def __init__(self, addresses: Sequence[int], **options: Any) -> None:
        super().__init__(addresses, **options)
        self._check = SaleCheck(self._dp)
        self._watch = {a: _Watch() for a in addresses}

    # ------------------------------------------------------------ for the family

    def _on_request(self, address: int, command: int | None) -> list[Event]:
        """The POS asked pump ``address`` ``command`` (None: a command that changes it)."""
        self._counts["requests"] += 1
        if command is None:
            self._counts["changing"] += 1
        if not self._known(address):
            return []
        return self._next_step(address, self._watch[address], command) + self._asking(address)

    def _on_reply(
        self, address: int, command: int | None, reply: Reply | None, raw: bytes
    ) -> list[Event]:
        """Pump ``address`` answered ``command`` with ``reply`` (both None: the
        acknowledgement of a command that changes the pump)."""
        events = self._reply_from(address)
        if events is None:
            return []
        watch = self._watch[address]
        if command is None or reply is None:
            self._counts["changing"] += 1
            return events + self._next_step(address, watch, None)
        events += self._next_step(address, watch, command)
        part = reply.part()
        witness = "price" in part and watch.price == part["price"]
        if "price" in part:
            watch.price = part["price"]
        if command == self.STEPS[watch.step]:
            events += self._add(address, watch, reply, part, raw, witness)
        if reply.state is not None:
            events += self._on_status(address, watch, reply.state, reply)
        return events

    def _lost(self, asked: tuple[int, int | None] | None = None) -> None:
        """Spoilt or unplaceable bytes: readings still missing their sale end —
        except the one whose next step is ``asked`` (pump, command), the POS's
        question still out (a spoilt reply to it is asked again)."""
        for address, watch in self._watch.items():
            if not watch.step or "volume" in watch.parts:
                continue
            if asked is not None and asked == (address, self.STEPS[watch.step]):
                continue
            self._drop(watch)

    def _nozzle_status(self, address: int, state: NozzleState, reply: Reply) -> NozzleStatus:
        """The state as reported; a family adds the running fill's values it has."""
        return NozzleStatus(address, NOZZLE, state)

    # ------------------------------------------------------------ internals

    def _offline(self, address: int) -> None:
        watch = self._watch[address]
        watch.state = None
        self._drop(watch)

    @staticmethod
    def _drop(watch: _Watch) -> None:
        watch.step, watch.parts, watch.raw = 0, {}, bytearray()

    def _next_step(self, address: int, watch: _Watch, command: int | None) -> list[Event]:
        """A reading under way ends unless ``command`` is its next step (or starts a new one
        — then the new one replaces it). Ending, one with all but the price is completed
        with the last price seen (a POS that skipped the price read)."""
        if not watch.step or command == self.STEPS[watch.step]:
            return []
        events: list[Event] = []
        if all(name in watch.parts for name in _FIELDS[:-1]) and watch.price is not None:
            events = self._complete(address, watch, watch.price, False)
        elif all(name in watch.parts for name in _FIELDS[:-1]):
            self._counts["no_price"] += 1
        self._drop(watch)
        return events

    def _add(
        self,
        address: int,
        watch: _Watch,
        reply: Reply,
        part: dict[str, int],
        raw: bytes,
        witness: bool,
    ) -> list[Event]:
        """The reply of the reading's next step: add it; complete the reading at the last."""
        if reply.state is not None and reply.state is not NozzleState.IDLE:
            self._drop(watch)  # busy: the sale shown is gone
            return []
        watch.parts.update(part)
        watch.raw += raw
        watch.step += 1
        events: list[Event] = []
        if any(name in part for name in _TOTALS) and all(n in watch.parts for n in _TOTALS):
            pair = (watch.parts["volume_total"], watch.parts["amount_total"])
            self._check.totals_seen(address, pair)
            if pair != watch.totals:
                watch.totals = pair
                events.append(self._totals(address, NOZZLE, *pair))
        if watch.step < len(self.STEPS):
            return events
        price = watch.parts.get("price")
        if price is not None:
            events += self._complete(address, watch, price, witness)
        self._drop(watch)
        return events

    def _complete(self, address: int, watch: _Watch, price: int, witness: bool) -> list[Event]:
        parts = watch.parts
        reading = Reading(
            parts["volume_total"],
            parts["amount_total"],
            parts["volume"],
            parts["amount"],
            price,
            bytes(watch.raw),
        )
        if reading.volume == 0 and reading.amount == 0:
            return []  # totals read, no sale shown: nothing to report
        now = self._clock()
        end_seen = watch.end_seen_at is not None
        verdict, trusted = self._check.reading(address, reading, witness, end_seen)
        if verdict in ("held", "rejected", "reported"):
            self._counts["rereads" if verdict == "reported" else verdict] += 1
            if verdict == "held":
                watch.held_at, watch.end_seen_at = watch.end_seen_at or now, None
            return []
        events: list[Event] = []
        for item in trusted:
            if item is reading:
                ended_at, watch.end_seen_at = watch.end_seen_at or now, None
            else:
                ended_at = watch.held_at or now
            self._counts["sales"] += 1
            digits = self.TOTAL_DIGITS
            events.append(
                sale_of(address, item, ended_at=ended_at, dp=self._dp, total_digits=digits)
            )
        return events

    def _on_status(
        self, address: int, watch: _Watch, state: NozzleState, reply: Reply
    ) -> list[Event]:
        if state in BUSY:
            watch.end_seen_at = None  # a new fill: an earlier end is not the next reading's
        elif watch.state in BUSY:
            watch.end_seen_at = self._clock()
        watch.state = state
        return self._report(self._nozzle_status(address, state, reply))
