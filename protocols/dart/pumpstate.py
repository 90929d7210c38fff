"""What a DART master knows about one fuelling point, and how a pump's words read.

The poll driver (:class:`~protocols.dart.driver.DartPoller`) owns its
conversation and the passive monitor (:class:`~protocols.dart.monitor.DartMonitor`)
watches someone else's; both keep a :class:`PumpState` per pump and read
every DATA frame a pump sends with the one interpreter here,
:meth:`PumpState.read`, so both turn the same words into the same events.
What differs is only when a DC2 counts as a completed fill's final values
(the poller: in the answer to its own final read, :class:`Cycle`; the
monitor: see its doc) — both through :meth:`PumpState.fill` and
:meth:`PumpState.sale_or_totals`. Rules (sales in the driver's doc):

Nozzle state from DC1 (pump status) and DC3 (NOZIO of the pump's current
nozzle); a DART fuelling point uses one nozzle at a time:

- status 4 filling or 8 suspended (a paused fill) → ``FUELLING``;
- status 0 not programmed or 7 switched off → ``ABNORMAL``, for every
  nozzle of that pump reported so far (the state is pump-wide);
- otherwise nozzle out → ``LIFTED``, nozzle in → ``IDLE``.

While ``FUELLING`` the status carries the live volume and amount of the last
DC2 (a status answer without DC2 repeats the last one read). When a pump
reports a nozzle, any other nozzle it reported non-idle before is back in
its holster: it is reported ``IDLE``. Until a pump has named a nozzle (DC3
with a nozzle 1–15) no :class:`NozzleStatus` is emitted for it.

Alarms: the answer to a status request (CD1 DCC 00) lists every active
alarm as one DC5 each; a code that appears is raised, a code that an answer
to a status request no longer lists is cleared (the reader says whether the
frame answers a status request: ``status_answer``). A pump that sends DC5 only
once therefore shows as an alarm raised and cleared (an alarm event).

Identity: DC9 is reported when it differs from the last one reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from protocols.bcd import scaled
from protocols.dart.framer import ADR_MIN, Transaction
from protocols.dart.messages import (
    ST_FILLING,
    ST_FILLING_COMPLETED,
    ST_MAX_REACHED,
    ST_NOT_PROGRAMMED,
    ST_SUSPENDED,
    ST_SWITCHED_OFF,
    Dc1,
    Dc2,
    Dc3,
    Dc5,
    Dc9,
    Dc101,
    Reply,
    alarm_code,
    parse_reply,
)
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    Sale,
    Totals,
)
from protocols.saleline import Scale

#: Pump number n (1..32, what a config's ``addresses`` list) ↔ ADR 0x4F + n:
#: the 32 fuelling points of protocols.md §3 map onto ADR 0x50–0x6F.
ADR_OFFSET = ADR_MIN - 1
MIN_PUMP, MAX_PUMP = 1, 32


def check_pumps(numbers: Iterable[int]) -> None:
    """ValueError unless every pump number is :data:`MIN_PUMP`..:data:`MAX_PUMP`."""
    for number in numbers:
        if not MIN_PUMP <= number <= MAX_PUMP:
            raise ValueError(f"pump address {number} is not {MIN_PUMP}..{MAX_PUMP}")


#: DC1 statuses grouped by what they mean for a nozzle or a sale.
FUELLING_STATUSES = frozenset({ST_FILLING, ST_SUSPENDED})
ABNORMAL_STATUSES = frozenset({ST_NOT_PROGRAMMED, ST_SWITCHED_OFF})
#: A fill has ended and its final values are readable until the next fill:
#: 5 filling completed, 6 max (preset) reached.
COMPLETED_STATUSES = frozenset({ST_FILLING_COMPLETED, ST_MAX_REACHED})

#: Sale keys remembered per pump (committed ones, and the time each fill was
#: first seen). A pump holds one completed fill at a time, so a handful is
#: plenty; 32 bounds memory when a pump keeps reporting new totals.
MAX_REMEMBERED_KEYS = 32

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V) -> V:
    """``memo[key]`` (set to ``value`` if absent), keeping the newest MAX_REMEMBERED_KEYS."""
    if key not in memo:
        memo[key] = value
        while len(memo) > MAX_REMEMBERED_KEYS:
            del memo[next(iter(memo))]
    return memo[key]


def as_sent(trans: int, data: bytes) -> bytes:
    """A transaction of a decoded frame as it sat in the frame (TRANS, LNG, data):
    plain bytes, as construct's build costs ~5 µs a piece on every sale read."""
    return bytes((trans, len(data))) + data


@dataclass(frozen=True)
class Reading:
    """What one DATA frame from a pump said, parsed (the last of each kind wins).

    ``messages`` are its good transactions in order; ``totals`` each DC101
    with its transaction bytes (the sale's evidence); ``fill_raw`` the DC2
    and DC3 transactions as received; ``unknown`` counts transactions of a
    TRANS we do not read.
    """

    messages: tuple[Reply, ...]
    dc1: Dc1 | None
    dc2: Dc2 | None
    dc3: Dc3 | None
    totals: tuple[tuple[Dc101, bytes], ...]
    fill_raw: bytes
    unknown: int


@dataclass(frozen=True)
class Fill:
    """DC2 of a completed fill with the nozzle and price in force (raw counts)."""

    nozzle: int
    volume: int
    amount: int
    price: int
    raw: bytes  # DC2 (and DC3) as received, TRANS and LNG included


@dataclass
class PumpState:
    """One fuelling point: link bookkeeping and the last things it reported."""

    number: int
    tx_seq: int = 0  # sequence nibble of our next new DATA frame
    status: int | None = None  # last DC1
    nozzle: int | None = None  # last DC3 nozzle (None: none named yet)
    nozzle_out: bool = False
    price: int | None = None  # last DC3 price, raw
    live: Dc2 | None = None  # last DC2 of the fill in progress
    states: dict[int, NozzleState] = field(default_factory=dict)  # last state sent
    alarms: set[int] = field(default_factory=set)
    identity: str | None = None
    misses: int = 0  # consecutive timeouts
    online: bool | None = None  # None: never heard of yet
    seen_at: datetime | None = None  # when the current completed fill was first seen
    ended_at: dict[str, datetime] = field(default_factory=dict)  # sale key → seen_at
    committed: dict[str, None] = field(default_factory=dict)  # sale keys stored

    @property
    def adr(self) -> int:
        return ADR_OFFSET + self.number

    @property
    def completed(self) -> bool:
        """The last DC1 shows a completed fill (filling completed / max reached)."""
        return self.status in COMPLETED_STATUSES

    def read(
        self,
        transactions: Iterable[Transaction],
        *,
        status_answer: bool,
        scale: Scale,
        clock: Callable[[], datetime],
    ) -> tuple[list[Event], Reading]:
        """Take in one DATA frame this pump sent; the events it means (module doc).

        ``status_answer``: the frame answers a status request (CD1 DCC 00),
        so its DC5 list is complete and a code it lacks is cleared. DC101 is
        left to :meth:`sale_or_totals` (whether it closes a sale is the
        caller's rule); everything else is applied here: identity, alarms,
        status (and when a completed fill was first seen), nozzle, price
        and the nozzle statuses.
        """
        events: list[Event] = []
        messages: list[Reply] = []
        totals: list[tuple[Dc101, bytes]] = []
        fill_raw = b""
        unknown = 0
        dc1 = dc2 = dc3 = None
        for trans, data in transactions:
            reply = parse_reply(trans, data)
            if reply is None:
                unknown += 1
                continue
            if isinstance(reply, ProtocolError):
                events.append(ProtocolError(reply.kind, reply.detail, self.number))
                continue
            messages.append(reply)
            if isinstance(reply, Dc1):
                dc1 = reply
            elif isinstance(reply, Dc2 | Dc3):
                fill_raw += as_sent(trans, data)
                if isinstance(reply, Dc2):
                    dc2 = reply
                else:
                    dc3 = reply
            elif isinstance(reply, Dc101):
                totals.append((reply, as_sent(trans, data)))
        for m in messages:
            if isinstance(m, Dc9):
                events += self.identity_events(m.pump_id)
        codes = [m.code for m in messages if isinstance(m, Dc5)]
        complete = dc1 is not None and status_answer
        if codes or complete:
            events += self.alarm_events(codes, complete=complete)
        if dc1 is not None:
            self.status = dc1.status
            if not self.completed:
                self.seen_at = None
            elif self.seen_at is None:
                self.seen_at = clock()
        if dc3 is not None:
            self.nozzle = dc3.nozzle or None
            self.nozzle_out, self.price = dc3.nozzle_out, dc3.price
        if dc1 is not None or dc2 is not None or dc3 is not None:
            events += self.statuses(dc2, scale)
        reading = Reading(tuple(messages), dc1, dc2, dc3, tuple(totals), fill_raw, unknown)
        return events, reading

    def fill(self, reading: Reading) -> Fill | None:
        """The completed fill ``reading`` shows: its DC2 while the pump shows a
        completed fill on a named nozzle at a known price; else None."""
        dc2 = reading.dc2
        if dc2 is None or not self.completed or self.nozzle is None or self.price is None:
            return None
        return Fill(self.nozzle, dc2.volume, dc2.amount, self.price, reading.fill_raw)

    def sale_or_totals(
        self,
        dc101: Dc101,
        wire: bytes,
        fill: Fill | None,
        scale: Scale,
        grades: Mapping[int, str],
        clock: Callable[[], datetime],
    ) -> list[Event]:
        """DC101 → the :class:`Sale` of ``fill`` when it is that nozzle's (see the
        driver doc), else :class:`Totals`; nothing for a sale already committed."""
        volume_total = scaled(dc101.volume, scale.volume)
        amount_total = scaled(dc101.amount, scale.amount)
        if fill is None or dc101.counter != fill.nozzle:
            return [Totals(self.number, dc101.counter, volume_total, amount_total)]
        key = f"{fill.nozzle}:{dc101.volume}"
        ended_at = remember(self.ended_at, key, self.seen_at or clock())
        self.seen_at = None  # the next completed fill gets its own time
        if key in self.committed:
            return []
        sale = Sale(
            address=self.number,
            nozzle=fill.nozzle,
            order_no=str(dc101.volume),
            ended_at=ended_at,
            grade=grades.get(fill.nozzle, ""),
            price=scaled(fill.price, scale.price),
            volume=scaled(fill.volume, scale.volume),
            amount=scaled(fill.amount, scale.amount),
            totalizer_volume_end=volume_total,
            totalizer_amount_end=amount_total,
            key=key,
            raw=fill.raw + wire,
        )
        return [sale]

    def current_state(self) -> NozzleState:
        if self.status in FUELLING_STATUSES:
            return NozzleState.FUELLING
        if self.status in ABNORMAL_STATUSES:
            return NozzleState.ABNORMAL
        return NozzleState.LIFTED if self.nozzle_out else NozzleState.IDLE

    def statuses(self, dc2: Dc2 | None, scale: Scale) -> list[NozzleStatus]:
        """One status for the current nozzle, and for each other one that changes."""
        out = []
        current, abnormal = self.nozzle, self.status in ABNORMAL_STATUSES
        nozzles = set(self.states) | ({current} if current is not None else set())
        for n in sorted(nozzles):
            volume = amount = price = None
            if n == current:
                state = self.current_state()
                if self.price is not None:
                    price = scaled(self.price, scale.price)
                self.live = (dc2 or self.live) if state == NozzleState.FUELLING else None
                if self.live is not None:
                    volume = scaled(self.live.volume, scale.volume)
                    amount = scaled(self.live.amount, scale.amount)
            elif abnormal:
                state = NozzleState.ABNORMAL
            elif self.states[n] != NozzleState.IDLE:
                state = NozzleState.IDLE
            else:
                continue
            self.states[n] = state
            out.append(NozzleStatus(self.number, n, state, volume, amount, price))
        return out

    def alarm_events(self, codes: Iterable[int], *, complete: bool) -> list[DeviceAlarm]:
        """Raise the codes not active yet; when ``complete``, clear the ones missing."""
        now = set(codes)
        raised = sorted(now - self.alarms)
        cleared = sorted(self.alarms - now) if complete else []
        self.alarms = now if complete else self.alarms | now
        return [DeviceAlarm(self.number, None, alarm_code(c), c, active=True) for c in raised] + [
            DeviceAlarm(self.number, None, alarm_code(c), c, active=False) for c in cleared
        ]

    def identity_events(self, pump_id: str) -> list[Identity]:
        if pump_id == self.identity:
            return []
        self.identity = pump_id
        return [Identity(self.number, None, {"pump_id": pump_id})]


Goal = Literal["status", "fill", "final"]
Step = Literal["cmd", "poll", "ack", "done"]


@dataclass
class Cycle:
    """One pump being read by the driver: goal, next step, what this cycle saw."""

    pump: PumpState
    seq: int  # sequence nibble of our DATA for the goal
    goal: Goal = "status"
    step: Step = "cmd"
    ack_seq: int = 0  # the pump's DATA we owe an ACK
    answered: bool = False  # the goal's answer arrived
    attempts: int = 0
    completed: bool = False  # the pump shows a completed fill
    nozzle: int = 0  # the nozzle of that fill (the final goal's CD101 COUN)
    fill: Fill | None = None  # its DC2, read by the final goal

    def answered_by(self, msgs: Sequence[Reply]) -> bool:
        """Do these replies answer the goal (DC1 / DC2 / DC101 of the nozzle)?"""
        if self.goal == "status":
            return any(isinstance(m, Dc1) for m in msgs)
        if self.goal == "fill":
            return any(isinstance(m, Dc2) for m in msgs)
        nozzle = self.nozzle if self.fill is not None else None
        return any(isinstance(m, Dc101) and m.counter == nozzle for m in msgs)
