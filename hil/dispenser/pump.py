"""The simulated Sinopec pump's state and answers, without I/O or clock reads.

One pump on one bus address with N nozzles. It keeps its finished
transactions as *pending* records until the master confirms them, answers a
30 poll with the oldest pending 32 record (or a 31 real-time report when
none is pending) and a 32 confirmation with a 31 (protocols.md §2; the
confirmation's shape is our documented choice, protocols/sinopec/messages.py).

Only the protocols/ encoders and decoders are shared with the collector;
everything that decides *what* a record contains lives here, so the
simulator stays an independent ground truth.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from protocols.events import ProtocolError
from protocols.sinopec.framer import Frame
from protocols.sinopec.messages import (
    CMD_POLL,
    CMD_RECORD,
    ST_IDLE,
    ST_NOZZLE,
    RealtimeEntry,
    TransactionRecord,
    build_realtime,
    build_record,
    parse_confirm,
)

#: ctrl bit 6 marks the calling side; a responder sets the opposite of the
#: request's (protocols.md §2, "ctrl").
CALLER_BIT = 0x40

#: Grade code (4 BCD digits) and price in 0.01 yuan/L, given to the nozzles
#: round robin: 92 and 95 petrol and diesel, plausible 2026 pump prices.
GRADES: tuple[tuple[str, int], ...] = (("1092", 785), ("1095", 836), ("2000", 752))

#: Unconfirmed records a pump holds. Real pumps keep a bounded journal and
#: lock the nozzles when it is full; 64 is far above what a polling master
#: lets pile up, yet small enough that a test can fill it.
MAX_PENDING_RECORDS = 64

#: Nozzles per pump. A 31 entry of a fuelling nozzle is 11 bytes: 16 of them
#: (178 bytes with NUM) stay inside the framer's MAX_DATA_LEN (256).
MAX_NOZZLES = 16

#: Volume of one sale, 0.01 L: 2.00 … 80.00 L.
MIN_VOLUME, MAX_VOLUME = 200, 8000

#: Initial nozzle totalizer, 0.01 L: around 100000.00 L.
TOTALIZER_START = (9_000_000, 11_000_000)

#: Initial transaction counter (POS_TTC, 4 bytes): far from the 2^32 wrap.
TTC_START = (1, 1_000_000)


def money(value: int) -> str:
    """0.01 units → a decimal string with two places ("236.44", "0.00")."""
    return format(Decimal(value).scaleb(-2), "f")


@dataclass
class SimNozzle:
    nzn: int
    grade: str
    price: int  # 0.01 yuan/L
    totalizer: int  # 0.01 L
    busy: bool = False  # lifted or fuelling
    target: int = 0  # volume of the current fill, 0.01 L
    fuel_start: float | None = None  # clock when fuel started to flow
    fuel_seconds: float = 1.0

    def live_volume(self, now: float) -> int:
        if not self.busy or self.fuel_start is None:
            return 0
        fraction = min(1.0, max(0.0, (now - self.fuel_start) / self.fuel_seconds))
        return int(self.target * fraction)


@dataclass(frozen=True)
class Order:
    """One finished transaction: the record and its ground-truth line."""

    record: TransactionRecord
    truth: dict[str, Any]


class SimPump:
    """A pump on ``address`` with ``nozzles`` nozzles; every choice from ``rng``."""

    def __init__(self, address: int, nozzles: int, rng: random.Random, port_number: int) -> None:
        if not 1 <= nozzles <= MAX_NOZZLES:
            raise ValueError(f"nozzles must be 1..{MAX_NOZZLES}")
        self.address = address
        self.port_number = port_number
        self.nozzles = [
            SimNozzle(
                nzn=n,
                grade=GRADES[(n - 1) % len(GRADES)][0],
                price=GRADES[(n - 1) % len(GRADES)][1],
                totalizer=rng.randint(*TOTALIZER_START),
            )
            for n in range(1, nozzles + 1)
        ]
        self.next_ttc = rng.randint(*TTC_START)
        self.pending: deque[TransactionRecord] = deque()
        self.confirmed = 0

    # ------------------------------------------------------------ fuelling

    def can_start(self, nozzle: SimNozzle) -> bool:
        """Idle, and the journal has room for this fill's record."""
        busy = sum(1 for n in self.nozzles if n.busy)
        return not nozzle.busy and len(self.pending) + busy < MAX_PENDING_RECORDS

    def lift(self, nozzle: SimNozzle, volume: int) -> None:
        nozzle.busy, nozzle.target, nozzle.fuel_start = True, volume, None

    def start_fuel(self, nozzle: SimNozzle, now: float, seconds: float) -> None:
        nozzle.fuel_start, nozzle.fuel_seconds = now, seconds

    def hang_up(self, nozzle: SimNozzle, ended_at: datetime) -> Order:
        """Finish the fill: the record (pending until confirmed) and its truth.

        ``ended_at`` is aware, whole seconds; TIME carries its wall clock.
        """
        volume, price = nozzle.target, nozzle.price
        amount = (price * volume + 50) // 100  # round half up to 0.01 yuan
        start = nozzle.totalizer
        nozzle.totalizer += volume
        record = TransactionRecord(
            pos_ttc=self.next_ttc,
            time=ended_at.replace(tzinfo=None),
            nzn=nozzle.nzn,
            g_code=nozzle.grade,
            vol=volume,
            prc=price,
            amn=amount,
            v_tot=nozzle.totalizer,
        )
        self.next_ttc += 1
        nozzle.busy, nozzle.target, nozzle.fuel_start = False, 0, None
        self.pending.append(record)
        truth = {
            "nozzle": f"p{self.port_number:02d}.a{self.address}.n{nozzle.nzn}",
            "order_no": str(record.pos_ttc),
            "grade": record.g_code,
            "price": money(price),
            "volume": money(volume),
            "amount": money(amount),
            "totalizer_volume_start": money(start),
            "totalizer_volume_end": money(nozzle.totalizer),
            "ended_at": ended_at.isoformat(timespec="milliseconds"),
        }
        return Order(record, truth)

    # ------------------------------------------------------------ the link

    def entries(self, now: float) -> list[RealtimeEntry]:
        out = []
        for n in self.nozzles:
            if not n.busy:
                out.append(RealtimeEntry(ST_IDLE, n.nzn))
                continue
            vol = n.live_volume(now)
            amn = (n.price * vol + 50) // 100
            out.append(RealtimeEntry(ST_NOZZLE, n.nzn, amn=amn, vol=vol, prc=n.price))
        return out

    def handle(self, frame: Frame, now: float) -> tuple[Frame | None, str | None]:
        """The reply to ``frame`` (None: stay silent) and a note for the log."""
        if frame.dst != self.address:
            return None, None
        note = None
        if frame.command == CMD_POLL and len(frame.data) == 1:
            if self.pending:
                data = build_record(self.pending[0])  # the oldest first
            else:
                data = build_realtime(self.entries(now))
        elif frame.command == CMD_RECORD:
            pos_ttc = parse_confirm(frame.data)
            if isinstance(pos_ttc, ProtocolError):
                return None, f"ignored: {pos_ttc.detail}"
            match = next((r for r in self.pending if r.pos_ttc == pos_ttc), None)
            if match is not None:
                self.pending.remove(match)
                self.confirmed += 1
            else:
                note = f"confirmation of {pos_ttc}: no such pending record"
            data = build_realtime(self.entries(now))
        else:
            return None, f"ignored command {frame.command:02X}"
        ctrl = frame.frame_no | ((frame.ctrl & CALLER_BIT) ^ CALLER_BIT)
        return Frame(dst=frame.src, src=self.address, ctrl=ctrl, data=data), note
