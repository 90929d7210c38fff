"""A pump's last sale where the wire has no transaction number: read twice, keyed by totals.

CK1313 (:mod:`protocols.ck1313`) and Lanfeng (:mod:`protocols.lanfeng`)
pumps show one finished sale at a time — the last one — next to their
totalizers, and number nothing. The FCC of ``fangym0335/first`` notices a
sale's end by its totals moving, then reads the sale shown
(``fangym0335/first src/lischn006.c:1092-1200``,
``fangym0335/first src/lischn017.c:897-1023``). What both families share:

:class:`Reading`
    one complete reading of a pump: volume and amount totalizers, and the
    sale shown (volume, amount, unit price), as raw counts.

The key
    ``"{volume total}:{amount total}"`` after the sale, digits as on the
    wire (:func:`sale_key`). The volume totalizer grows by every sale's
    volume, so two real sales with equal volume and amount still end at
    different totals (distinct keys), while the same sale read twice, by us
    or by the station's POS, has one key (stored once). A fill without fuel
    moves nothing and is no sale. The key repeats only if a nozzle's totals
    come back to a value a sale already ended at: a totalizer reset (a board
    swapped) that later passes through that exact pair, or a wrap of the
    10–12 digit counters. The ``order_no`` is the volume total's digits.

:class:`SaleRead` (poll drivers)
    The steps of one reading, asked in order and repeated until complete
    readings in a row agree. Both checksums have blind spots (the CK1313
    XOR ignores bit 7, Lanfeng's sum misses compensating errors), so a
    value is only believed when the pump said it more than once; the
    readings also agree only if nothing moved between them. Two in a row
    suffice when the totals before the sale are known and the reading's
    totals exceed them by exactly its volume and amount (three values read
    at different moments agree); otherwise three in a row are needed (the
    first read after start-up, a sale after one the driver missed): one
    undetected error repeated identically three times is what it takes to
    fool it. A first reading whose totals the driver already knows ends
    the read at once: nothing new.

:class:`SaleCheck` (passive monitors)
    A monitor sees only what the station's POS reads, usually once. It
    reports a reading when it can check it (:meth:`SaleCheck.reading`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, NamedTuple

from protocols.bcd import scaled
from protocols.events import Sale
from protocols.saleline import Scale

#: These pumps have one nozzle per fuelling point: the FCC always uses
#: logical nozzle 1 ("one nozzle per channel", "single-nozzle pump",
#: ``fangym0335/first src/lischn006.c:1634-1655``;
#: ``fangym0335/first src/lischn017.c:1559-1565``).
NOZZLE = 1

#: Complete readings of one sale before a read gives up without enough in
#: a row that agree (2 or 3, module doc): each costs a few exchanges; six
#: mean the pump is busy again or the line is too noisy to believe now.
MAX_READINGS = 6

#: Readings in a row that must agree: with the totals difference as a
#: check, and without one (module doc).
AGREE_CHECKED, AGREE_UNCHECKED = 2, 3

#: Spoilt replies (bad checksum, wrong layout, silence after a partial
#: reply) in a row before the read is parked: the other pumps' turns first,
#: then it goes on (a noisy moment passes). Each spoilt reply starts the
#: reading under way again from its first step.
MAX_STEP_TRIES = 3

#: Times one read is parked before it is given up (the next totals check
#: starts a new one): 3 × 3 spoilt replies in a row is a line too noisy to
#: read now.
MAX_PARKS = 3

#: Keys a monitor remembers per pump as reported: the POS re-reads the last
#: sale a few times at most; bounded so memory per pump stays fixed.
MAX_REPORTED_KEYS = 8

#: The price relation only checks readings of at least 1 L at 1 yuan/L or
#: more: an error the checksum misses changes a BCD digit by 8 (a flipped
#: bit 7) or two bytes by opposite amounts; on such a sale that moves
#: price × volume − amount by far more than one unit of the amount, below
#: it the relation cannot tell a wrong digit from rounding.
MIN_CHECKED = Decimal(1)


#: Implied decimal places of the wire's counts: the scale every family of
#: sales in counts shares (protocols/saleline.py).
Decimals = Scale


@dataclass(frozen=True, slots=True)
class Reading:
    """One complete reading of a pump: totals after its last sale and that sale."""

    volume_total: int
    amount_total: int
    volume: int
    amount: int
    price: int
    #: The replies it was read from, for evidence (not compared).
    raw: bytes = field(default=b"", compare=False)

    @property
    def totals(self) -> tuple[int, int]:
        return (self.volume_total, self.amount_total)


def sale_key(reading: Reading, total_digits: int) -> str:
    """``volume total:amount total`` as the wire's digits (module doc: why)."""
    width = f"0{total_digits}d"
    return f"{reading.volume_total:{width}}:{reading.amount_total:{width}}"


def sale_of(
    address: int,
    reading: Reading,
    *,
    ended_at: datetime,
    dp: Decimals,
    total_digits: int,
    grade: str = "",
) -> Sale:
    """The :class:`Sale` of a trusted reading (no transaction number: see the module doc)."""
    return Sale(
        address=address,
        nozzle=NOZZLE,
        order_no=f"{reading.volume_total:0{total_digits}d}",
        ended_at=ended_at,
        grade=grade,
        price=scaled(reading.price, dp.price),
        volume=scaled(reading.volume, dp.volume),
        amount=scaled(reading.amount, dp.amount),
        totalizer_volume_end=scaled(reading.volume_total, dp.volume),
        totalizer_amount_end=scaled(reading.amount_total, dp.amount),
        key=sale_key(reading, total_digits),
        raw=reading.raw,
    )


def price_consistent(reading: Reading, dp: Decimals) -> bool:
    """amount = price × volume within one unit of the amount (guarded: :data:`MIN_CHECKED`)."""
    price, volume = scaled(reading.price, dp.price), scaled(reading.volume, dp.volume)
    if price < MIN_CHECKED or volume < MIN_CHECKED:
        return False
    amount = scaled(reading.amount, dp.amount)
    return abs(price * volume - amount) <= Decimal(1).scaleb(-dp.amount)


# ---------------------------------------------------------------- poll


def continues(reading: Reading, before: tuple[int, int] | None) -> bool:
    """The reading's totals are ``before`` plus exactly its volume and amount."""
    if before is None:
        return False
    return (reading.volume_total - before[0], reading.amount_total - before[1]) == (
        reading.volume,
        reading.amount,
    )


class Finished(NamedTuple):
    """How a :class:`SaleRead` ended.

    ``agreed``: enough readings in a row were equal (``reading``); ``known``:
    the first reading's totals are ones the driver already knows
    (``totals``; nothing new); ``disagreed``: :data:`MAX_READINGS` readings
    and never enough in a row alike.
    """

    verdict: Literal["agreed", "known", "disagreed"]
    reading: Reading | None = None
    totals: tuple[int, int] | None = None


class SaleRead:
    """One pump's last sale being read by a poll driver (module doc).

    ``steps`` are the commands of one reading in order; each reply is given
    back as a part (``{"volume_total": …}`` …) with :meth:`on_part`, which
    returns None while more is needed. ``known``: totals that mean "nothing
    new" when the first reading shows them. ``before``: the totals before
    this sale, when the driver knows them (its last settled totals).
    """

    def __init__(
        self,
        address: int,
        steps: tuple[int, ...],
        known: Collection[tuple[int, int]] = (),
        before: tuple[int, int] | None = None,
    ) -> None:
        if not steps:
            raise ValueError("a reading needs at least one step")
        self.address = address
        self.steps = steps
        self.known = frozenset(known)
        self.before = before
        self.readings = 0  # complete readings so far
        self._index = 0
        self._parts: dict[str, int] = {}
        self._raw = bytearray()
        self._previous: Reading | None = None
        self._run = 0  # readings in a row equal to _previous
        self._tries = 0
        self.parks = 0

    @property
    def step(self) -> int:
        """The command to ask next."""
        return self.steps[self._index]

    def on_part(self, part: Mapping[str, int], raw: bytes = b"") -> Finished | None:
        """The reply to :attr:`step`, parsed; a :class:`Finished` once the read is over."""
        self._tries = 0
        self._parts.update(part)
        self._raw += raw
        if self.readings == 0:
            volume_total = self._parts.get("volume_total")
            amount_total = self._parts.get("amount_total")
            totals = (volume_total, amount_total)
            if volume_total is not None and amount_total is not None and totals in self.known:
                return Finished("known", totals=(volume_total, amount_total))
        self._index += 1
        if self._index < len(self.steps):
            return None
        parts, raw = self._parts, bytes(self._raw)
        self._index, self._parts, self._raw = 0, {}, bytearray()
        reading = Reading(
            parts["volume_total"],
            parts["amount_total"],
            parts["volume"],
            parts["amount"],
            parts["price"],
            raw,
        )
        self.readings += 1
        if reading == self._previous:
            self._run += 1
        else:
            self._previous, self._run = reading, 1
        needed = AGREE_CHECKED if continues(reading, self.before) else AGREE_UNCHECKED
        if self._run >= needed:
            return Finished("agreed", reading=reading)
        if self.readings >= MAX_READINGS:
            return Finished("disagreed")
        return None

    def spoilt(self) -> bool:
        """The reply to :attr:`step` was spoilt: the reading starts again from its first
        step (a reading is consecutive good replies); False: stop for now."""
        self._index, self._parts, self._raw = 0, {}, bytearray()
        self._tries += 1
        return self._tries < MAX_STEP_TRIES

    def park(self) -> bool:
        """Stopped by spoilt replies: True to go on at the pump's next turn, False to give up."""
        self._tries = 0
        self.parks += 1
        return self.parks <= MAX_PARKS


# ---------------------------------------------------------------- passive

Verdict = Literal["delta", "repeat", "price", "reported", "held", "rejected"]


@dataclass
class _Seen:
    current: tuple[int, int] | None = None  # the last totals seen
    before: tuple[int, int] | None = None  # the totals seen before those (distinct)
    last: Reading | None = None  # the last complete reading
    held: Reading | None = None  # price-consistent, waiting for the next sale's check
    reported: deque[tuple[int, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_REPORTED_KEYS)
    )


class SaleCheck:
    """What a passive monitor may report of the readings it saw the POS make.

    Feed every totals reply (:meth:`totals_seen`) and every complete reading
    (:meth:`reading`). A reading is reported when one of these holds:

    ``repeat``
        the POS read the very same reading twice in a row;
    ``delta``
        its totals minus the totals seen before them are exactly its volume
        and amount (three values read at different times agree: one
        corrupted value breaks it), and its price is witnessed: amount =
        price × volume (:func:`price_consistent`), or ``price_witness``
        (the caller saw the same price in an earlier, separate reply);
    ``price``
        the monitor has seen no earlier totals of this pump (just started),
        it saw the pump go idle after a fill right before this reading
        (``end_seen``: the reading is that fill's sale, not a running
        display read after the next customer began), and amount = price ×
        volume. The totals are then unchecked: see docs/protocols for the
        one error that passes (a CK1313 bit 7).

    Otherwise a price-consistent reading taken right after an end seen is
    ``held``: the next sale's ``delta`` proves its totals (they are that
    sale's start) and it is reported then, before that sale — a sale the
    monitor missed in between costs one sale's delay, not the sale. Without
    the end seen a price-consistent reading may be a running display (start
    totals, the next fill in progress: consistent with the price too), so
    it is ``rejected`` like anything else. A reading whose key was reported
    is ``reported`` again, not repeated.
    """

    def __init__(self, dp: Decimals) -> None:
        self._dp = dp
        self._pumps: dict[int, _Seen] = {}

    def _seen(self, address: int) -> _Seen:
        seen = self._pumps.get(address)
        if seen is None:
            seen = self._pumps[address] = _Seen()
        return seen

    def totals_seen(self, address: int, totals: tuple[int, int]) -> None:
        seen = self._seen(address)
        if seen.current != totals:
            seen.before, seen.current = seen.current, totals

    def held(self, address: int) -> Reading | None:
        return self._seen(address).held

    def reading(
        self,
        address: int,
        reading: Reading,
        price_witness: bool = False,
        end_seen: bool = False,
    ) -> tuple[Verdict, list[Reading]]:
        """The verdict on ``reading`` and the readings to report now, oldest first."""
        seen = self._seen(address)
        previous, seen.last = seen.last, reading
        if reading.totals in seen.reported:
            return "reported", []
        before = seen.before if seen.current == reading.totals else None
        consistent = price_consistent(reading, self._dp)
        verdict: Verdict | None = None
        if reading == previous:
            verdict = "repeat"
        elif continues(reading, before) and (consistent or price_witness):
            verdict = "delta"
        elif before is None and seen.before is None and consistent and end_seen:
            verdict = "price"
        if verdict is None:
            if consistent and end_seen:
                seen.held = reading
                return "held", []
            return "rejected", []
        out: list[Reading] = []
        held, seen.held = seen.held, None
        if (
            verdict == "delta"
            and held is not None
            and held.totals == before
            and held.totals not in seen.reported
        ):
            out.append(held)  # its totals are this sale's start: proven now
            seen.reported.append(held.totals)
        out.append(reading)
        seen.reported.append(reading.totals)
        return verdict, out
