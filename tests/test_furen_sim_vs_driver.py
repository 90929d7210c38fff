"""FurenResponder against the poller, and the monitor watching, in-process:
simulated clock, seeded customers, a noisy line.

No pty and no sleeping: the test plays the port task (request, answer,
deadline) and the customers (lift, fuel, hang up) on a simulated clock, puts
every byte from the pump through :class:`LineFaults`, commits each sale as
the store would, and compares every sale with the simulator's own record.
The master is our poller, or an FCC that talks as fangym0335/first
src/lischn009.c does (status every turn, the sale read once after the fill,
an authorisation at each lift, a price write now and then); the monitor
watches it as a relay (two streams), as a tap hearing both sides, and as a
tap on the pump's RS-422 pair alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hil.dispenser.faults import LineFaults
from hil.dispenser.furen import READ_HOLD_S, FurenResponder, order_no_of
from hil.dispenser.model import MAX_VOLUME, MIN_VOLUME, PumpModel, SimSale
from protocols.bcd import bcd_encode
from protocols.events import Event, NozzleState, NozzleStatus, Sale
from protocols.furen.driver import FurenPoller
from protocols.furen.framer import Frame, FrameDecoder, encode_frame
from protocols.furen.messages import build_read, build_status
from protocols.furen.monitor import FurenMonitor

#: Simulated seconds per exchange and per missed deadline.
TURN_S, DEADLINE_S = 0.03, 0.2
EPOCH = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@dataclass
class Customer:
    """Fills the fuelling point, one nozzle at a time."""

    pump: PumpModel
    responder: FurenResponder
    rng: random.Random
    fills_left: int
    phase: str = "gap"  # gap → lifted → fuelling → gap
    until: float = 0.0
    nozzle: int = 1

    def step(self, now: float, sales: list[SimSale]) -> None:
        if now < self.until:
            return
        pump = self.pump
        if self.phase == "gap" and self.fills_left:
            nozzle = pump.nozzle(self.rng.randint(1, len(pump.nozzles)))
            if not self.responder.may_start(pump, nozzle):
                return  # that nozzle's last sale is not read yet
            self.nozzle = nozzle.nzn
            pump.lift(nozzle, self.rng.randint(MIN_VOLUME, MAX_VOLUME))
            self.phase, self.until = "lifted", now + self.rng.uniform(0.2, 1.0)
        elif self.phase == "lifted":
            seconds = self.rng.uniform(1.0, 4.0)
            pump.start_fuel(pump.nozzle(self.nozzle), now, seconds)
            self.phase, self.until = "fuelling", now + seconds
        elif self.phase == "fuelling":
            ended = (EPOCH + timedelta(seconds=now)).replace(microsecond=0)
            sales.append(pump.hang_up(pump.nozzle(self.nozzle), ended))
            self.fills_left -= 1
            self.phase, self.until = "gap", now + self.rng.uniform(0.0, 2.0)


@dataclass
class FccMaster:
    """A controller that talks as lischn009.c: 30 every turn (DoPolling
    :409-410); after a fill, when the status shows the nozzle back, the 56 of
    that nozzle once, tried up to 5 times (DoEot :997-1006); 61 authorise at
    each lift (DoCall :1370-1390, auto-authorisation); 51 the same price now
    and then (ChangePrice :822-836). Each request waits for its answer or a
    deadline; nothing else is checked."""

    nozzles: int
    clock: float = 0.0
    busy: int | None = None  # the nozzle fuelling or lifted, from the last status
    fuelled: bool = False
    authorise: bool = False
    read: tuple[int, int] | None = None  # (nozzle, tries left)
    turns: int = 0
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    asked: int | None = None

    def next_request(self) -> bytes:
        self.turns += 1
        if self.read is not None:
            frame, self.asked = build_read(0x56, self.read[0]), 0x56
        elif self.authorise:
            frame, self.asked, self.authorise = Frame(0, 0, 0, b"\x61\x01"), 0x61, False
        elif self.turns % 25 == 0:
            price = bcd_encode(785, 2)  # what the simulated nozzle 1 already sells at
            frame, self.asked = Frame(0, 0, 0xF0, b"\x51" + price + b"\x01"), 0x51
        else:
            when = (EPOCH + timedelta(seconds=self.clock)).replace(tzinfo=None, microsecond=0)
            frame, self.asked = build_status(when), 0x30
        return encode_frame(frame)

    def receive(self, data: bytes) -> None:
        answers = [f for f in self.decoder.receive_data(data) if isinstance(f, Frame)]
        self.decoder.flush()
        if self.asked == 0x56 and self.read is not None:
            nozzle, tries = self.read
            got = any(len(f.data) == 19 for f in answers)
            self.read = None if got or tries <= 1 else (nozzle, tries - 1)
        if self.asked != 0x30:
            return
        for frame in answers:
            if frame.command not in (0x5A, 0x5B):
                continue
            out = frame.b2 == 1 or frame.command == 0x5B
            nozzle = (frame.ctrl & 0x0F) + 1 if self.nozzles > 1 else 1
            if out and self.busy is None:
                self.busy, self.fuelled, self.authorise = nozzle, False, True
            self.fuelled |= frame.command == 0x5B
            if not out and self.busy is not None:
                if self.fuelled:
                    self.read = (self.busy, 5)
                self.busy = None


@dataclass
class Outcome:
    sims: list[SimSale]
    polled: dict[str, Sale]  # the poller's, by key (first read)
    watched: dict[str, list[Sale]]  # the monitor's, per way of watching
    statuses: list[NozzleStatus]
    responder: FurenResponder
    faults: LineFaults
    monitor_counters: dict[str, int]


def simulate(
    seed: int,
    *,
    fills: int,
    master: str = "poller",
    status: bool = False,
    nozzles: int = 2,
    bit_error_rate: float = 0.0,
    cut: tuple[float, float] | None = None,
    power_off: tuple[float, float] | None = None,
) -> Outcome:
    rng = random.Random(seed)
    pump = PumpModel.create(1, nozzles, rng)
    responder = FurenResponder([pump])
    customer = Customer(pump, responder, random.Random(rng.random()), fills)
    faults = LineFaults(random.Random(seed + 1), bit_error_rate)
    now = 0.0

    def clock() -> datetime:
        return (EPOCH + timedelta(seconds=now)).replace(tzinfo=None)

    poller = FurenPoller([1], nozzles=nozzles, status_with_clock=status, clock=clock)
    fcc = FccMaster(nozzles)
    watchers = {
        way: FurenMonitor([1], nozzles=nozzles, clock=clock) for way in ("relay", "bus", "tap")
    }
    sims: list[SimSale] = []
    polled: dict[str, Sale] = {}
    watched: dict[str, list[Sale]] = {way: [] for way in watchers}
    statuses: list[NozzleStatus] = []
    for _ in range(100_000):
        customer.step(now, sims)
        if customer.fills_left == 0 and customer.phase == "gap" and not pump.pending:
            done = polled if master == "poller" else {s.key: s for s in watched["relay"]}
            if len(done) >= len(sims) or now > 600:
                break
        faults.cut = cut is not None and cut[0] <= now < cut[1]
        pump.silent_until = power_off[1] if power_off and power_off[0] <= now else 0.0
        fcc.clock = now
        request = poller.next_request() if master == "poller" else fcc.next_request()
        assert request is not None
        # A cut line passes nothing either way (hil/dispenser/sim.py): the pump
        # does not even hear the request.
        answer = b"" if faults.cut else faults.apply(responder.receive_data(request, now))
        now += TURN_S
        for way, monitor in watchers.items():
            if way == "relay":
                seen = monitor.receive_request(request) + monitor.receive_response(answer)
            else:
                seen = monitor.receive_bus(request + answer if way == "bus" else answer)
            watched[way] += [e for e in seen if isinstance(e, Sale)]
        events: list[Event] = []
        if master == "poller":
            events = poller.receive_data(answer) if poller.awaiting_response else []
            if poller.awaiting_response:
                events += poller.response_timeout()
                now += DEADLINE_S
        else:
            fcc.receive(answer)
            now += 0 if answer else DEADLINE_S
        for event in events:
            if isinstance(event, Sale):
                polled.setdefault(event.key, event)
                poller.sale_committed(event)  # the store committed it
            elif isinstance(event, NozzleStatus):
                statuses.append(event)
    counters = watchers["relay"].counters
    return Outcome(sims, polled, watched, statuses, responder, faults, counters)


def truth(sim: SimSale) -> dict[str, object]:
    """What a sale of ``sim`` must say (2 decimals everywhere)."""
    return {
        "address": 1,
        "nozzle": sim.nozzle,
        "order_no": order_no_of(sim),
        "key": f"{sim.nozzle}:{sim.totalizer_volume_end}",
        "price": Decimal(sim.price).scaleb(-2),
        "volume": Decimal(sim.volume).scaleb(-2),
        "amount": Decimal(sim.amount).scaleb(-2),
        "totalizer_volume_end": Decimal(sim.totalizer_volume_end).scaleb(-2),
        "totalizer_amount_end": Decimal(sim.totalizer_amount_end).scaleb(-2),
    }


FIELDS = ("address", "nozzle", "order_no", "key", "price", "volume", "amount",
          "totalizer_volume_end", "totalizer_amount_end")  # fmt: skip


def fields(sale: Sale) -> dict[str, object]:
    return {name: getattr(sale, name) for name in FIELDS}


def check_exact(sales: list[Sale], sims: list[SimSale]) -> None:
    """Each simulated sale once, every field as the pump recorded it."""
    assert sorted(s.key for s in sales) == sorted(str(truth(s)["key"]) for s in sims)
    want = {str(truth(s)["key"]): truth(s) for s in sims}
    assert all(fields(s) == want[s.key] for s in sales)


def check_none_wrong(sales: list[Sale], sims: list[SimSale]) -> None:
    """No sale that was not sold, none with a field that differs."""
    want = {str(truth(s)["key"]): truth(s) for s in sims}
    assert all(s.key in want and fields(s) == want[s.key] for s in sales)


@pytest.mark.parametrize("status", [False, True])
def test_the_poller_and_every_watcher_read_each_sale_once(status: bool) -> None:
    out = simulate(7, fills=20, status=status)
    assert len(out.sims) == 20
    check_exact(list(out.polled.values()), out.sims)
    for sales in out.watched.values():
        check_exact(sales, out.sims)
    # D20: the pump saw no write; the clock only with the status on.
    assert out.responder.writes == (
        {"clock": out.responder.writes.get("clock", 0)} if status else {}
    )
    assert not status or out.responder.writes["clock"] > 100
    if status:  # the states went through lifted and fuelling and back
        states = {s.state for s in out.statuses}
        assert states == {NozzleState.IDLE, NozzleState.LIFTED, NozzleState.FUELLING}


def test_watching_an_fcc_records_each_sale_once() -> None:
    out = simulate(11, fills=16, master="fcc")
    assert len(out.sims) == 16
    for sales in out.watched.values():
        check_exact(sales, out.sims)
    # The FCC authorised and set prices; the monitor counted them, sent nothing.
    assert out.responder.writes["authorise"] == 16 and out.responder.writes["set_price"] > 3
    assert out.monitor_counters["pos_cmd_authorise"] == 16
    assert out.monitor_counters["pos_cmd_set_price"] == out.responder.writes["set_price"]


CASES = [(1, "poller", False), (2, "poller", True), (3, "fcc", False)]


@pytest.mark.parametrize(("seed", "master", "status"), CASES)
def test_one_byte_in_a_hundred_hit_still_gives_every_sale_exactly(
    seed: int, master: str, status: bool
) -> None:
    out = simulate(seed, fills=12, master=master, status=status, bit_error_rate=0.00125)
    assert out.faults.flipped_bits > 100
    if master == "poller":
        check_exact(list(out.polled.values()), out.sims)
    for sales in out.watched.values():
        check_exact(sales, out.sims)


@pytest.mark.parametrize(("seed", "master", "status"), CASES)
def test_one_bit_in_a_hundred_hit_gives_no_wrong_sale(seed: int, master: str, status: bool) -> None:
    # Most frames fail their CRC; what is read must still be exactly true.
    out = simulate(seed, fills=12, master=master, status=status, bit_error_rate=0.01)
    assert out.faults.flipped_bits > 500
    read = list(out.polled.values()) + [s for v in out.watched.values() for s in v]
    assert len(read) >= 3
    check_none_wrong(list(out.polled.values()), out.sims)
    for sales in out.watched.values():
        check_none_wrong(sales, out.sims)


def test_sales_survive_a_cut_line_and_a_power_cycle() -> None:
    out = simulate(4, fills=12, cut=(10.0, 25.0))
    check_exact(list(out.polled.values()), out.sims)
    out = simulate(6, fills=12, power_off=(10.0, 20.0))
    check_exact(list(out.polled.values()), out.sims)


def test_the_responder_answers_as_the_source_lays_out_and_counts_writes() -> None:
    rng = random.Random(1)
    pump = PumpModel.create(1, 2, rng)
    responder = FurenResponder([pump])
    nozzle = pump.nozzle(2)
    pump.lift(nozzle, 2500)
    pump.start_fuel(nozzle, 0.0, 1.0)
    [status] = FrameDecoder().receive_data(
        responder.receive_data(encode_frame(build_status(datetime(2026, 1, 1))), 0.5)
    )
    assert isinstance(status, Frame)
    assert (status.b2, status.ctrl, status.command) == (1, 0xF1, 0x5B)  # nozzle 2 fuelling
    assert status.data[1:4] == bytes.fromhex("001250")  # 12.50 L of 25.00 after half the time
    sale = pump.hang_up(nozzle, EPOCH)
    assert not responder.may_start(pump, nozzle)
    [record] = FrameDecoder().receive_data(
        responder.receive_data(encode_frame(build_read(0x56, 2)), 1.0)
    )
    assert isinstance(record, Frame) and len(record.data) == 19 and record.ctrl == 0xF1
    assert record.data[9:14] == bcd_encode(sale.totalizer_volume_end, 5)
    # Sent once: not taken until a second send or READ_HOLD_S later.
    assert not responder.may_start(pump, nozzle) and pump.taken == 0
    responder.receive_data(b"", 1.0 + READ_HOLD_S)
    assert responder.may_start(pump, nozzle) and pump.taken == 1
    pump.lift(nozzle, 1000)
    pump.start_fuel(nozzle, 5.0, 1.0)
    pump.hang_up(nozzle, EPOCH)
    for _ in range(2):
        responder.receive_data(encode_frame(build_read(0x56, 2)), 6.0)
    assert pump.taken == 2  # two sends: taken at once
    # Writes are acknowledged ([7] 01) and counted; a nozzle it lacks, silence.
    for request in (b"\x61\x01", b"\x62\x01", b"\x5d\x01\x01"):
        [ack] = FrameDecoder().receive_data(
            responder.receive_data(encode_frame(Frame(0, 0, 0, request)), 2.0)
        )
        assert isinstance(ack, Frame) and ack.data[:2] == bytes([request[0], 0x01])
    assert responder.writes == {"authorise": 1, "stop": 1, "mode": 1, "clock": 1}
    assert responder.receive_data(encode_frame(build_read(0x56, 3)), 2.0) == b""
    with pytest.raises(ValueError):
        FurenResponder([PumpModel.create(2, 1, rng)])
