"""What a simulated dispenser *is*, independent of the protocol it speaks.

A :class:`PumpModel` is one fuelling point on a bus address: its nozzles,
their totalizers (which only go up, unless a fault says otherwise), the
sales it finished and still holds for the master, its GB/T 9081-2023
component identities and its active metering / security alarms. Protocol
responders (``hil/dispenser/<protocol>.py``) only render this model in
their wire format and apply what the master reads or confirms; the
simulator core drives fuelling sessions and faults on it.

No I/O and no clock reads: times come in as arguments. Units are integers
in hundredths (0.01 L, 0.01 yuan, 0.01 yuan/L), as on most dispenser wires.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

#: Grade code (4 BCD digits) and price in 0.01 yuan/L, given to the nozzles
#: round robin: 92 and 95 petrol and diesel, plausible 2026 pump prices.
GRADES: tuple[tuple[str, int], ...] = (("1092", 785), ("1095", 836), ("2000", 752))

#: Unconfirmed sales a pump holds. Real pumps keep a bounded journal and lock
#: the nozzles when it is full; 64 is far above what a polling master lets
#: pile up, yet small enough that a test can fill it.
MAX_PENDING_SALES = 64

#: Volume of one sale, 0.01 L: 2.00 … 80.00 L.
MIN_VOLUME, MAX_VOLUME = 200, 8000

#: Initial nozzle volume totalizer, 0.01 L: around 100000.00 L.
TOTALIZER_START = (9_000_000, 11_000_000)

#: Initial transaction counter: far from any 4-byte or BCD wrap.
TXN_START = (1, 1_000_000)

#: GB/T 9081-2023 component names, as in the platform's ``nozzle`` body.
COMPONENTS = ("mainboard_id", "mcu_id", "encoder_id", "safety_id")

#: JJG 443 / GB/T 9081 display codes a pump may raise (protocols.md §5).
ALARM_CODES = (61, 62, 63, 64, 65)


def hundredths(value: int) -> str:
    """0.01 units → a decimal string with two places (``"236.44"``, ``"0.00"``)."""
    return format(Decimal(value).scaleb(-2), "f")


def amount_of(price: int, volume: int) -> int:
    """price (0.01 yuan/L) × volume (0.01 L) → 0.01 yuan, rounded half up."""
    return (price * volume + 50) // 100


@dataclass(frozen=True)
class SimSale:
    """One finished transaction, as the pump recorded it."""

    address: int
    nozzle: int
    txn_no: int
    ended_at: datetime  # aware, whole seconds: the pump's wall clock
    grade: str
    price: int
    volume: int
    amount: int
    totalizer_volume_start: int
    totalizer_volume_end: int
    totalizer_amount_start: int
    totalizer_amount_end: int

    def truth(self, port_number: int, *, amount_totalizer: bool = False) -> dict[str, Any]:
        """The ground-truth JSON line: every field the collector must reproduce.

        ``amount_totalizer``: the protocol carries the amount totalizer, so
        the collector must report it too.
        """
        line: dict[str, Any] = {
            "nozzle": f"p{port_number:02d}.a{self.address}.n{self.nozzle}",
            "order_no": str(self.txn_no),
            "grade": self.grade,
            "price": hundredths(self.price),
            "volume": hundredths(self.volume),
            "amount": hundredths(self.amount),
            "totalizer_volume_start": hundredths(self.totalizer_volume_start),
            "totalizer_volume_end": hundredths(self.totalizer_volume_end),
            "ended_at": self.ended_at.isoformat(timespec="milliseconds"),
        }
        if amount_totalizer:
            line["totalizer_amount_start"] = hundredths(self.totalizer_amount_start)
            line["totalizer_amount_end"] = hundredths(self.totalizer_amount_end)
        return line


@dataclass
class NozzleModel:
    nzn: int
    grade: str
    price: int  # 0.01 yuan/L
    totalizer_volume: int  # 0.01 L
    totalizer_amount: int  # 0.01 yuan
    uid: str  # GB/T 9081-2023 nozzle unique identity
    state: str = "idle"  # idle | lifted | fuelling
    target: int = 0  # volume of the current fill, 0.01 L
    fuel_start: float | None = None  # clock when fuel started to flow
    fuel_seconds: float = 1.0

    @property
    def busy(self) -> bool:
        return self.state != "idle"

    def live_volume(self, now: float) -> int:
        if self.state != "fuelling" or self.fuel_start is None:
            return 0
        fraction = min(1.0, max(0.0, (now - self.fuel_start) / self.fuel_seconds))
        return int(self.target * fraction)

    def live_amount(self, now: float) -> int:
        return amount_of(self.price, self.live_volume(now))


@dataclass
class PumpModel:
    """One pump (fuelling point) on one bus address; every choice from ``rng``."""

    address: int
    nozzles: list[NozzleModel]
    next_txn: int
    identity: str  # the pump's own serial number (10 digits)
    components: dict[str, str] = field(default_factory=dict)
    alarms: set[int] = field(default_factory=set)
    pending: deque[SimSale] = field(default_factory=deque)
    taken: int = 0
    #: 0.01 yuan added to the next sale's amount (an ``amount-off`` fault).
    amount_bias: int = 0
    #: Clock until which the pump is powered off and answers nothing (a
    #: ``power-cycle`` fault); responders check it via ``responder.answering``.
    silent_until: float = 0.0
    #: One fill at a time, and none while a sale is pending: a pump whose
    #: one display holds the last sale until the controller acknowledges it
    #: (a UDC pump ignores a lift until then). Its responder sets it.
    one_fill_at_a_time: bool = False
    #: No fuel flows until the controller authorises the lifted nozzle
    #: (:meth:`authorise`); its responder sets it.
    authorisation_required: bool = False
    authorised: set[int] = field(default_factory=set)  # nozzle numbers
    authorisations: int = 0

    @classmethod
    def create(cls, address: int, nozzles: int, rng: random.Random) -> PumpModel:
        models = []
        for n in range(1, nozzles + 1):
            grade, price = GRADES[(n - 1) % len(GRADES)]
            models.append(
                NozzleModel(
                    nzn=n,
                    grade=grade,
                    price=price,
                    totalizer_volume=rng.randint(*TOTALIZER_START),
                    totalizer_amount=rng.randint(*TOTALIZER_START) * 8,
                    uid=f"{rng.getrandbits(64):016X}",
                )
            )
        return cls(
            address=address,
            nozzles=models,
            next_txn=rng.randint(*TXN_START),
            identity=f"{rng.randint(0, 10**10 - 1):010d}",
            components={name: f"{rng.getrandbits(64):016X}" for name in COMPONENTS},
        )

    def nozzle(self, nzn: int) -> NozzleModel:
        return self.nozzles[nzn - 1]

    # ---------------------------------------------------------------- fuelling

    def can_start(self, nozzle: NozzleModel) -> bool:
        """Idle, and the journal has room for this fill's sale."""
        busy = sum(1 for n in self.nozzles if n.busy)
        if self.one_fill_at_a_time and (busy or self.pending):
            return False
        return not nozzle.busy and len(self.pending) + busy < MAX_PENDING_SALES

    def lift(self, nozzle: NozzleModel, volume: int) -> None:
        nozzle.state, nozzle.target, nozzle.fuel_start = "lifted", volume, None

    def authorise(self, nozzle: NozzleModel) -> None:
        """The controller authorised this lifted nozzle: fuel may flow."""
        if nozzle.state == "lifted" and nozzle.nzn not in self.authorised:
            self.authorised.add(nozzle.nzn)
            self.authorisations += 1

    def may_fuel(self, nozzle: NozzleModel) -> bool:
        return not self.authorisation_required or nozzle.nzn in self.authorised

    def start_fuel(self, nozzle: NozzleModel, now: float, seconds: float) -> None:
        nozzle.state, nozzle.fuel_start, nozzle.fuel_seconds = "fuelling", now, seconds

    def hang_up(self, nozzle: NozzleModel, ended_at: datetime) -> SimSale:
        """Finish the fill: the sale is pending until the master takes it."""
        volume, price = nozzle.target, nozzle.price
        amount = amount_of(price, volume) + self.amount_bias
        self.amount_bias = 0
        sale = SimSale(
            address=self.address,
            nozzle=nozzle.nzn,
            txn_no=self.next_txn,
            ended_at=ended_at,
            grade=nozzle.grade,
            price=price,
            volume=volume,
            amount=amount,
            totalizer_volume_start=nozzle.totalizer_volume,
            totalizer_volume_end=nozzle.totalizer_volume + volume,
            totalizer_amount_start=nozzle.totalizer_amount,
            totalizer_amount_end=nozzle.totalizer_amount + amount,
        )
        nozzle.totalizer_volume += volume
        nozzle.totalizer_amount += amount
        self.next_txn += 1
        self.authorised.discard(nozzle.nzn)
        nozzle.state, nozzle.target, nozzle.fuel_start = "idle", 0, None
        self.pending.append(sale)
        return sale

    def take(self, txn_no: int) -> bool:
        """The master read / confirmed this sale: the pump may forget it."""
        match = next((s for s in self.pending if s.txn_no == txn_no), None)
        if match is None:
            return False
        self.pending.remove(match)
        self.taken += 1
        return True

    # ------------------------------------------------------------------ faults

    def jump_totalizer(self, nozzle: NozzleModel, delta: int) -> None:
        """An unannounced totalizer jump (fuel sold unrecorded, or a step back)."""
        nozzle.totalizer_volume += delta

    def change_component(self, name: str, rng: random.Random, nzn: int = 1) -> str:
        """Replace a core part (SPEC A6): a new identity for ``name``.

        ``nzn``: the nozzle whose ``nozzle_uid`` changes (other parts are pump-wide).
        """
        if name == "nozzle_uid":
            nozzle = self.nozzle(nzn)
            nozzle.uid = f"{rng.getrandbits(64):016X}"
            return nozzle.uid
        self.components[name] = f"{rng.getrandbits(64):016X}"
        return self.components[name]

    def skip_orders(self, count: int) -> list[int]:
        """Transactions the pump numbers but never offers (lost journal entries):
        the master sees the counter jump (SPEC A7). Returns the numbers skipped."""
        skipped = list(range(self.next_txn, self.next_txn + count))
        self.next_txn += count
        return skipped

    def raise_alarm(self, code: int) -> None:
        self.alarms.add(code)

    def clear_alarm(self, code: int) -> None:
        self.alarms.discard(code)

    def power_cycle(self) -> None:
        """Power lost and back: totalizers and the journal survive, fills do not."""
        self.authorised.clear()
        for nozzle in self.nozzles:
            nozzle.state, nozzle.target, nozzle.fuel_start = "idle", 0, None
