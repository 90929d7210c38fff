"""What :class:`~protocols.dart.driver.DartPoller` knows about one fuelling point.

The driver owns the conversation; this module holds what it learnt (a
:class:`PumpState` per pump, a :class:`Cycle` for the pump being read) and
turns what a pump said into normalised events. Rules (sales in the driver's
doc):

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
to a status request no longer lists is cleared. A pump that sends DC5 only
once therefore shows as an alarm raised and cleared (an alarm event).

Identity: DC9 is reported when it differs from the last one reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from protocols.dart.framer import ADR_MIN
from protocols.dart.messages import (
    ST_FILLING,
    ST_FILLING_COMPLETED,
    ST_MAX_REACHED,
    ST_NOT_PROGRAMMED,
    ST_SUSPENDED,
    ST_SWITCHED_OFF,
    Dc1,
    Dc2,
    Dc101,
    Reply,
    alarm_code,
    scaled,
)
from protocols.events import DeviceAlarm, Event, Identity, NozzleState, NozzleStatus, Sale, Totals

#: Pump number n (1..32, what a config's ``addresses`` list) ↔ ADR 0x4F + n:
#: the 32 fuelling points of protocols.md §3 map onto ADR 0x50–0x6F.
ADR_OFFSET = ADR_MIN - 1
MIN_PUMP, MAX_PUMP = 1, 32

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


@dataclass(frozen=True)
class Scale:
    """Implied decimal places of the BCD values (configuration, protocols.md §3)."""

    volume: int = 2
    amount: int = 2
    price: int = 2


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

    def answered_by(self, msgs: list[Reply]) -> bool:
        """Do these replies answer the goal (DC1 / DC2 / DC101 of the nozzle)?"""
        if self.goal == "status":
            return any(isinstance(m, Dc1) for m in msgs)
        if self.goal == "fill":
            return any(isinstance(m, Dc2) for m in msgs)
        nozzle = self.nozzle if self.fill is not None else None
        return any(isinstance(m, Dc101) and m.counter == nozzle for m in msgs)

    def totals(
        self,
        dc101: Dc101,
        wire: bytes,
        scale: Scale,
        grades: Mapping[int, str],
        clock: Callable[[], datetime],
    ) -> list[Event]:
        """DC101 → the completed fill's :class:`Sale` (see the driver doc), or :class:`Totals`."""
        pump, fill = self.pump, self.fill
        volume_total = scaled(dc101.volume, scale.volume)
        amount_total = scaled(dc101.amount, scale.amount)
        final = self.goal == "final" and self.completed
        if not (final and fill is not None and dc101.counter == fill.nozzle):
            return [Totals(pump.number, dc101.counter, volume_total, amount_total)]
        key = f"{fill.nozzle}:{dc101.volume}"
        ended_at = remember(pump.ended_at, key, pump.seen_at or clock())
        pump.seen_at = None  # the next completed fill gets its own time
        if key in pump.committed:
            return []
        sale = Sale(
            address=pump.number,
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
