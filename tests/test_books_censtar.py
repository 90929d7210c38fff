"""The link against the books on a Censtar line (docs/alarms.md, docs/brands.md):
the station controller removes each sale it read with a 17 naming the
record's sequence number — its booking of that sale. The controller of
hil/masters/censtar.py runs the simulated pumps in-process (no I/O, the clock
passed in); the collector's monitor reads both directions as a relay does
and its events go to the reconciler, with each order committed at once (as
the sink reports it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from collector.station.reconcile import (
    CONFIRM_MISMATCH,
    ORDER_COUNT_IMBALANCE,
    SALE_UNCONFIRMED,
    BooksSettings,
    Finding,
    Reconciler,
)
from hil.dispenser.censtar import CenstarResponder
from hil.dispenser.model import PumpModel
from hil.masters.censtar import Master
from protocols.censtar.messages import CMD_CLEAR, encode
from protocols.censtar.monitor import CenstarMonitor
from protocols.events import Confirmation, Sale

CST = timezone(timedelta(hours=8))
START = datetime(2026, 12, 7, 0, 0, 5, tzinfo=CST)
SETTINGS = BooksSettings(
    confirm_within_s=30, count_window_s=3600, pos_silent_after_s=60, start_grace_s=0
)
TICK_S = 0.05


class HoldingMaster(Master):
    """A controller that does not remove the sale ``hold`` (pump address, its
    number) before ``until`` (simulated s): the pump keeps it uncleared and
    offers it again, as a POS that has not booked it would leave it."""

    def __init__(self, addresses: Sequence[int], hold: tuple[int, int], until: float) -> None:
        super().__init__(addresses)
        self.hold, self.until, self.now = hold, until, 0.0
        self.held = 0  # 17s not sent

    def _queue(self, address: int, command: int, data: bytes = b"") -> None:
        number = int.from_bytes(data, "big")
        if command == CMD_CLEAR and self.now < self.until and (address, number) == self.hold:
            self.held += 1
            return
        super()._queue(address, command, data)


def run(seconds: float, master: Master, extra: Sequence[tuple[float, bytes]] = ()) -> tuple[
    list[Finding], Reconciler, list[Sale]
]:  # fmt: skip
    rng = random.Random(4)
    pumps = [PumpModel.create(address, 1, rng) for address in (1, 2)]
    responder = CenstarResponder(pumps)
    monitor = CenstarMonitor([1, 2], clock=lambda: START.replace(tzinfo=None))
    rec = Reconciler(3, SETTINGS, 0.0, START)
    findings: list[Finding] = []
    sales: list[Sale] = []
    injected = sorted(extra)
    now, next_fill, frames = 0.0, 1.0, 0

    def feed(events: Sequence[object], at: float) -> None:
        nonlocal frames
        wall = START + timedelta(seconds=at)
        if monitor.master_frames != frames:
            frames = monitor.master_frames
            findings.extend(rec.pos_active(at))
        for e in events:
            if isinstance(e, Sale):
                sales.append(e)
                nozzle = f"p03.a{e.address}.n{e.nozzle}"
                findings.extend(rec.sale(nozzle, e, at, wall))
                assert e.number is not None  # the store commits its order at once
                findings.extend(rec.order_stored(e.address, e.number, e.key, f"{nozzle}:{e.key}"))
            elif isinstance(e, Confirmation):
                findings.extend(rec.confirmation(e, at, wall))

    while now < seconds:
        now += TICK_S
        if isinstance(master, HoldingMaster):
            master.now = now
        if now >= next_fill:  # one fill at a time per pump, round robin
            pump = pumps[int(now) % 2]
            nozzle = next((n for n in pump.nozzles if pump.can_start(n)), None)
            if nozzle is not None:
                pump.lift(nozzle, rng.randint(200, 8000))
            next_fill = now + 2.0
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "lifted" and pump.may_fuel(nozzle):
                    pump.start_fuel(nozzle, now, 1.0)
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    pump.hang_up(nozzle, START.replace(tzinfo=None))
        while injected and injected[0][0] <= now:
            feed(monitor.receive_request(injected.pop(0)[1]), now)
        request = master.next_request()
        if request is None:
            continue
        feed(monitor.receive_request(request), now)
        reply = responder.receive_data(request, now)
        if not reply:
            master.response_timeout()
            continue
        feed(monitor.receive_response(reply), now)
        master.receive_data(reply)
        findings.extend(rec.tick(now, START + timedelta(seconds=now)))
    findings.extend(rec.tick(now + 3700, START + timedelta(seconds=now + 3700)))
    return findings, rec, sales


def test_every_sale_removed_by_its_17_gives_no_finding() -> None:
    findings, rec, sales = run(240, Master([1, 2]))
    assert len(sales) >= 100
    assert findings == []
    assert rec.counters["sales"] == rec.counters["confirmations"] == len(sales)


def test_a_sale_left_uncleared_and_a_17_of_a_number_never_read() -> None:
    _, _, clean = run(60, Master([1, 2]))
    target = clean[19]  # the 20th sale: the same in both runs up to there
    assert target.booking is not None
    master = HoldingMaster([1, 2], (target.address, target.booking), until=100.0)
    ghost = encode(CMD_CLEAR, 2, (0xBEEF).to_bytes(2, "big"))  # a 17 of a number never read
    findings, rec, sales = run(160, master, [(150.0, ghost)])
    assert master.held > 1, "the controller read it again and again, and held it back"
    got = sorted((f.code, f.source, f.detail.get("pos_ttc")) for f in findings)
    assert got == [
        (CONFIRM_MISMATCH, "p03.a2", 0xBEEF),
        (ORDER_COUNT_IMBALANCE, "p03.a2", None),  # that 17 counts on the pump's row
        (SALE_UNCONFIRMED, f"p03.a{target.address}.n1", target.booking),
    ]
    (imbalance,) = [f for f in findings if f.code == ORDER_COUNT_IMBALANCE]
    assert (imbalance.detail["dispenser"], imbalance.detail["pos_confirmed"]) == (0, 1)
    # The held sale was read once as a sale (the rereads are the monitor's),
    # confirmed late: the nozzle's count balances.
    held = [s for s in sales if (s.address, s.booking) == (target.address, target.booking)]
    assert len(held) == 1 and rec.counters["late"] == 1
