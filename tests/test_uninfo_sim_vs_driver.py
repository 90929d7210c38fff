"""UninfoResponder against the poller, and the monitor watching, in-process:
simulated clock, seeded customers, a noisy line.

No pty and no sleeping: the test plays the port task (request, answer,
deadline) and the customers (lift, fuel, hang up) on a simulated clock, puts
every byte from the pumps through :class:`LineFaults`, commits each sale as
the store would, and compares every sale with the simulator's own record.
The master is our poller, or an FCC that talks as fangym0335/first
src/lischn011.c does; the monitor watches it as a relay (two streams) and
on the loop itself (one stream).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hil.dispenser.faults import LineFaults
from hil.dispenser.model import MAX_VOLUME, MIN_VOLUME, PumpModel, SimSale
from hil.dispenser.uninfo import UninfoResponder, order_no_of
from protocols.events import Event, NozzleState, NozzleStatus, Sale
from protocols.uninfo.driver import UninfoPoller
from protocols.uninfo.framer import Reply, ReplyReader, request_of
from protocols.uninfo.messages import FN_PRICE, build_block, digit_words
from protocols.uninfo.monitor import UninfoMonitor

#: Simulated seconds per exchange and per missed deadline.
TURN_S, DEADLINE_S = 0.03, 0.2
EPOCH = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
ADDRESSES = (1, 16)


@dataclass
class Customer:
    """Fills one fuelling point, one nozzle at a time."""

    pump: PumpModel
    responder: UninfoResponder
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
                return  # the last sale is not read yet
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
    """A controller that talks as lischn011.c: ``A`` to each pump in turn
    (DoPolling, :384-396); ``8`` while it fuels (DoBusy, :1518-1536); ``9`` at a
    lift (DoCall's auto-authorisation, :1603-1604); after a fill, at 6 or 1
    (:511-527, :604-620), DoEot: ``B`` up to 5 times, and ``C`` up to 5 times
    when nozzle 1's volume total moved (it compares ``gunLog`` 1's alone,
    :1146-1180); a price block for nozzle 1 at its own price now and then
    while idle (ChangePrice, :944-991). It starts by reading every pump's
    totals (InitPumpTotal, :1767-1800)."""

    addresses: tuple[int, ...]
    plan: deque[tuple[int, int, int]] = field(default_factory=deque)  # (byte, pump, tries)
    turn: int = -1
    turns: int = -1
    fuelled: dict[int, bool] = field(default_factory=dict)
    authorised: dict[int, bool] = field(default_factory=dict)
    totals: dict[int, int] = field(default_factory=dict)  # nozzle 1's volume total
    reader: ReplyReader = field(default_factory=ReplyReader)
    asked: tuple[int, int, int] | None = None

    def next_request(self) -> bytes:
        if self.turns == -1:  # InitPumpTotal: every pump's totals first, :1767-1800
            self.turns = 0
            self.plan.extend((0xB0 | a % 16, a, 1) for a in self.addresses)
        if not self.plan:
            self.turn = (self.turn + 1) % len(self.addresses)
            self.turns += 1
            address = self.addresses[self.turn]
            self.plan.append((0xA0 | address % 16, address, 1))
            if self.turns % 25 == 0 and not self.fuelled.get(address):
                self.plan.append((0xD0, address, 1))
        byte, address, _ = self.asked = self.plan.popleft()
        if byte == 0xD0:
            words = digit_words(785, 6)
            fields = b"\xf5\xe0\xf3" + words + b"\xe2\xf4" + words + b"\xe2"
            wire = build_block(address, FN_PRICE, fields)
            self.reader.expect(request_of(wire[0]))  # its answer: 12 words, [0] = D | pump
            return wire
        self.reader.expect(request_of(byte))
        return bytes([byte])

    def receive(self, data: bytes) -> None:
        assert self.asked is not None
        byte, address, tries = self.asked
        got = [i for i in self.reader.receive_data(data) if isinstance(i, Reply)]
        self.reader.flush()
        command = byte >> 4
        if command in (0xB, 0xC) and not got and tries < 5:
            self.plan.appendleft((byte, address, tries + 1))
            return
        if not got:
            return
        value = got[0].value
        if command == 0xA:
            assert isinstance(value, int)
            if value == 2 and not self.authorised.get(address):
                self.authorised[address] = True
                self.plan.append((0x90 | address % 16, address, 1))
            if value in (2, 3, 4):
                self.fuelled[address] = True
            if value == 4:
                self.plan.append((0x80 | address % 16, address, 1))
            if value in (1, 6) and self.fuelled.get(address):
                self.fuelled[address] = self.authorised[address] = False
                self.plan.append((0xB0 | address % 16, address, 1))
        elif command == 0xB:
            assert isinstance(value, tuple)
            total = next(g.volume_total for g in value if g.nozzle == 1)
            if self.totals.get(address) != total:
                self.totals[address] = total
                self.plan.appendleft((0xC0 | address % 16, address, 1))


@dataclass
class Outcome:
    sims: list[SimSale]
    polled: dict[str, Sale]  # the poller's, by key (first read)
    watched: dict[str, list[Sale]]  # the monitor's, per way of watching
    statuses: list[NozzleStatus]
    responders: list[UninfoResponder]
    faults: LineFaults
    monitor_counters: dict[str, int]
    heard: set[int]


def simulate(
    seed: int,
    *,
    fills: int,
    master: str = "poller",
    nozzles: int = 2,
    echo: bool = False,
    bit_error_rate: float = 0.0,
    cut: tuple[float, float] | None = None,
    power_off: tuple[float, float] | None = None,
) -> Outcome:
    rng = random.Random(seed)
    pumps = [PumpModel.create(a, nozzles, rng) for a in ADDRESSES]
    responder = UninfoResponder(pumps, echo=echo)
    customers = [Customer(p, responder, random.Random(rng.random()), fills) for p in pumps]
    faults = LineFaults(random.Random(seed + 1), bit_error_rate)
    now = 0.0

    def clock() -> datetime:
        return (EPOCH + timedelta(seconds=now)).replace(tzinfo=None)

    poller = UninfoPoller(ADDRESSES, echo=echo, clock=clock)
    fcc = FccMaster(ADDRESSES)
    watchers = {
        "relay": UninfoMonitor(ADDRESSES, echo=echo, clock=clock),
        "bus": UninfoMonitor(ADDRESSES, clock=clock),
    }
    sims: list[SimSale] = []
    polled: dict[str, Sale] = {}
    watched: dict[str, list[Sale]] = {way: [] for way in watchers}
    statuses: list[NozzleStatus] = []
    heard: set[int] = set()
    settled: float | None = None
    for _ in range(200_000):
        for customer in customers:
            customer.step(now, sims)
        # Done when every fill ended and was taken, and then every sale was
        # read or 5 s passed (a sale a noisy line let slip is never read).
        if all(c.fills_left == 0 and c.phase == "gap" for c in customers) and not any(
            p.pending for p in pumps
        ):
            settled = now if settled is None else settled
            done = polled if master == "poller" else watched["relay"]
            if len(done) >= len(sims) or now - settled > 5.0:
                break
        if now > 900:
            break
        faults.cut = cut is not None and cut[0] <= now < cut[1]
        for pump in pumps:
            pump.silent_until = power_off[1] if power_off and power_off[0] <= now else 0.0
        request = poller.next_request() if master == "poller" else fcc.next_request()
        assert request is not None
        heard.add(request[0])
        # A cut line passes nothing either way: the pumps do not hear the request.
        answer = b"" if faults.cut else faults.apply(responder.receive_data(request, now))
        now += TURN_S
        on_loop = answer[len(request) :] if echo else answer  # a tap sees each byte once
        relay, bus = watchers["relay"], watchers["bus"]
        seen = relay.receive_request(request) + relay.receive_response(answer)
        watched["relay"] += [e for e in seen if isinstance(e, Sale)]
        watched["bus"] += [e for e in bus.receive_bus(request + on_loop) if isinstance(e, Sale)]
        events: list[Event] = []
        if master == "poller":
            events = poller.receive_data(answer) if poller.awaiting_response else []
            if poller.awaiting_response:
                events += poller.response_timeout()
                now += DEADLINE_S
        else:
            fcc.receive(answer[len(request) :] if echo else answer)
            now += 0 if answer else DEADLINE_S
        for event in events:
            if isinstance(event, Sale):
                polled.setdefault(event.key, event)
                poller.sale_committed(event)  # the store committed it
            elif isinstance(event, NozzleStatus):
                statuses.append(event)
    counters = watchers["relay"].counters
    return Outcome(sims, polled, watched, statuses, [responder], faults, counters, heard)


def truth(sim: SimSale) -> dict[str, object]:
    """What a sale of ``sim`` must say (2 decimals everywhere)."""
    return {
        "address": sim.address,
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


def ids(sales: list[Sale]) -> list[tuple[int, str]]:
    return sorted((s.address, s.key) for s in sales)


def check_exact(sales: list[Sale], sims: list[SimSale]) -> None:
    """Each simulated sale once, every field as the pump recorded it."""
    assert ids(sales) == sorted((s.address, str(truth(s)["key"])) for s in sims)
    want = {(s.address, str(truth(s)["key"])): truth(s) for s in sims}
    assert all(fields(s) == want[s.address, s.key] for s in sales)


def check_none_wrong(sales: list[Sale], sims: list[SimSale]) -> None:
    """No sale that was not sold, none with a field that differs, none twice."""
    want = {(s.address, str(truth(s)["key"])): truth(s) for s in sims}
    assert all((s.address, s.key) in want and fields(s) == want[s.address, s.key] for s in sales)
    assert len(set(ids(sales))) == len(sales)


@pytest.mark.parametrize("echo", [False, True])
def test_the_poller_and_every_watcher_read_each_sale_once(echo: bool) -> None:
    out = simulate(7, fills=10, echo=echo)
    assert len(out.sims) == 20
    check_exact(list(out.polled.values()), out.sims)
    for sales in out.watched.values():
        check_exact(sales, out.sims)
    # D20: the pumps heard reads alone and saw no write.
    assert {b >> 4 for b in out.heard} == {0xA, 0x8, 0xB, 0xC}
    assert out.responders[0].writes == {}
    states = {s.state for s in out.statuses}
    assert states == {NozzleState.IDLE, NozzleState.LIFTED, NozzleState.FUELLING}


def test_watching_an_fcc_records_each_sale_once() -> None:
    out = simulate(11, fills=8, master="fcc", nozzles=1)
    assert len(out.sims) == 16
    for sales in out.watched.values():
        check_exact(sales, out.sims)
    # The FCC authorised and set prices; the monitor counted them, sent nothing.
    writes = out.responders[0].writes
    assert writes["authorise"] == 16 and writes["data"] > 3
    assert out.monitor_counters["pos_cmd_authorise"] == 16
    assert out.monitor_counters["pos_cmd_price"] == writes["data"]


@pytest.mark.parametrize(("seed", "rate"), [(1, 0.001), (2, 0.01)])
def test_a_noisy_line_gives_no_wrong_sale(seed: int, rate: float) -> None:
    """1e-3 per bit (≈ 1 % of bytes hit) and 1e-2 (nearly every reply hit):
    what the poller reads — two reads alike — and what a watcher of it reads
    is exactly true. A pump lets the next fill overwrite a record read twice
    however garbled, so under 1e-2 sales are lost, never wrong."""
    out = simulate(seed, fills=6, bit_error_rate=rate)
    assert out.faults.flipped_bits > 100
    check_none_wrong(list(out.polled.values()), out.sims)
    for sales in out.watched.values():
        check_none_wrong(sales, out.sims)
    if rate < 0.005:
        assert len(out.polled) >= len(out.sims) - 2


def test_sales_survive_a_cut_line_and_a_power_cycle() -> None:
    out = simulate(4, fills=5, cut=(10.0, 25.0))
    check_exact(list(out.polled.values()), out.sims)
    out = simulate(6, fills=5, power_off=(10.0, 20.0))
    check_exact(list(out.polled.values()), out.sims)


def test_the_responder_answers_as_the_source_lays_out_and_counts_writes() -> None:
    rng = random.Random(1)
    pump = PumpModel.create(16, 2, rng)
    responder = UninfoResponder([pump])
    nozzle = pump.nozzle(2)
    pump.lift(nozzle, 2500)
    assert responder.receive_data(b"\xa0", 0.0) == b"\x20"  # pump 16 is nibble 0, lifted
    pump.start_fuel(nozzle, 0.0, 1.0)
    display = responder.receive_data(b"\x80", 0.5)
    assert len(display) == 25 and display[9:17] == digit_words(1250, 8)  # half the fill
    sale = pump.hang_up(nozzle, EPOCH)
    assert not responder.may_start(pump, pump.nozzle(1))  # one record a point
    assert responder.receive_data(b"\xa0", 1.0) == b"\x60"  # fill ended
    record = responder.receive_data(b"\xc0", 1.0)
    assert len(record) == 73 and record[27:35] == digit_words(2500, 8)
    assert pump.taken == 0  # sent once: taken once sent twice and then asked else
    responder.receive_data(b"\xc0", 1.1)
    assert pump.taken == 0
    responder.receive_data(b"\xa0", 1.2)
    assert pump.taken == 1 and responder.may_start(pump, nozzle)
    totals = responder.receive_data(b"\xb0", 2.0)
    assert len(totals) == 84 and totals[1 + 40 + 3 : 1 + 40 + 12] == digit_words(
        sale.totalizer_volume_end, 9
    )
    # What changes a pump: counted; authorise and stop have no answer (:1477,
    # :1428), a D block 12 words (:992) and the new price when idle.
    assert responder.receive_data(b"\x90\x70\xfe", 3.0) == b""
    words = digit_words(799, 6)
    block = build_block(16, FN_PRICE, b"\xf5\xe1\xf3" + words + b"\xe2\xf4" + words + b"\xe2")
    answer = responder.receive_data(block, 3.0)
    assert len(answer) == 12 and answer[0] == 0xD0 and answer[8] == 0xE0
    assert pump.nozzle(2).price == 799
    assert responder.writes == {"authorise": 1, "stop": 2, "data": 1}
    # With echo, the loop's copy of each request comes first.
    echoing = UninfoResponder([pump], echo=True)
    assert echoing.receive_data(b"\xa0", 4.0) == b"\xa0\x10"
