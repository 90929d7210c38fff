"""DartResponder against DartPoller in-process: simulated clock, seeded, noisy line.

No pty and no sleeping: the test plays the port task (request, answer, deadline)
and the fuelling customers (lift, fuel, hang up) on a simulated clock, puts
every byte from the pumps through :class:`LineFaults`, commits each sale as the
store would, and compares every sale read with the simulator's own record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hil.dispenser.dart import DartResponder, order_no_of
from hil.dispenser.faults import LineFaults
from hil.dispenser.model import MAX_VOLUME, MIN_VOLUME, PumpModel, SimSale
from protocols.dart.driver import DartPoller
from protocols.dart.framer import Frame, decode, encode_frame
from protocols.dart.messages import Cd1, Cd101, Dc1, Dc2, Dc3, Dc9, Dc101, build
from protocols.events import NozzleState, NozzleStatus, PumpLink, Sale

#: Simulated seconds per exchange and per missed deadline.
TURN_S, DEADLINE_S = 0.03, 0.2
EPOCH = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@dataclass
class Customer:
    """Fills one pump, one nozzle at a time (a DART fuelling point)."""

    pump: PumpModel
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
            self.nozzle = self.rng.randint(1, len(pump.nozzles))
            pump.lift(pump.nozzle(self.nozzle), self.rng.randint(MIN_VOLUME, MAX_VOLUME))
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


def as_sale(sim: SimSale) -> dict[str, object]:
    """What the driver must report for ``sim`` (2 decimals everywhere)."""
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


FIELDS = (
    "address",
    "nozzle",
    "order_no",
    "key",
    "price",
    "volume",
    "amount",
    "totalizer_volume_end",
    "totalizer_amount_end",
)


def fields(sale: Sale) -> dict[str, object]:
    return {name: getattr(sale, name) for name in FIELDS}


def sim_key(sim: SimSale) -> str:
    return f"{sim.address}:{sim.nozzle}:{sim.totalizer_volume_end}"


@dataclass
class Outcome:
    sims: list[SimSale]
    sales: dict[str, Sale]  # by "address:key", as first read
    statuses: list[NozzleStatus]
    links: list[PumpLink]
    pumps: list[PumpModel]
    faults: LineFaults
    driver: DartPoller
    responder: DartResponder


def simulate(
    seed: int,
    *,
    fills: int,
    bit_error_rate: float = 0.00125,  # per bit: ≈1 % of bytes hit
    drop_rate: float = 0.0,
    cut: tuple[float, float] | None = None,
) -> Outcome:
    rng = random.Random(seed)
    pumps = [PumpModel.create(1, 3, rng), PumpModel.create(2, 4, rng)]
    customers = [Customer(p, random.Random(rng.random()), fills) for p in pumps]
    responder = DartResponder(pumps)
    faults = LineFaults(random.Random(seed + 1), bit_error_rate, drop_rate)
    now = 0.0
    driver = DartPoller([1, 2], clock=lambda: (EPOCH + timedelta(seconds=now)).replace(tzinfo=None))
    sims: list[SimSale] = []
    sales: dict[str, Sale] = {}
    statuses: list[NozzleStatus] = []
    links: list[PumpLink] = []
    for _ in range(200_000):
        for customer in customers:
            customer.step(now, sims)
        done = all(c.fills_left == 0 and c.phase == "gap" for c in customers)
        if done and not any(p.pending for p in pumps) and len(sales) == len(sims):
            break
        faults.cut = cut is not None and cut[0] <= now < cut[1]
        request = driver.next_request()
        assert request is not None
        answer = faults.apply(responder.receive_data(request, now))
        now += TURN_S
        events = driver.receive_data(answer) if driver.awaiting_response else []
        if driver.awaiting_response:
            events += driver.response_timeout()
            now += DEADLINE_S
        for event in events:
            if isinstance(event, Sale):
                sales.setdefault(f"{event.address}:{event.key}", event)
                driver.sale_committed(event)  # the store committed it
            elif isinstance(event, NozzleStatus):
                statuses.append(event)
            elif isinstance(event, PumpLink):
                links.append(event)
    else:
        pytest.fail(f"not finished: {len(sales)} of {len(sims)} sales read")
    return Outcome(sims, sales, statuses, links, pumps, faults, driver, responder)


@pytest.mark.parametrize("seed", [20261122, 1, 2])
def test_every_sale_read_exactly_on_a_noisy_line(seed: int) -> None:
    out = simulate(seed, fills=22)
    assert len(out.sims) == 44
    want = {sim_key(s): as_sale(s) for s in out.sims}
    got = {key: fields(s) for key, s in out.sales.items()}
    assert got == want  # every sale read, none wrong, none invented
    assert [len(p.pending) for p in out.pumps] == [0, 0]
    assert sum(p.taken for p in out.pumps) == 44
    c = out.driver.counters  # the line really was noisy:
    assert out.faults.flipped_bits > 150 and c["timeouts"] > 100
    assert c["bad_crc"] + c["bad_escape"] + c["truncated"] > 100
    live = [s for s in out.statuses if s.state == NozzleState.FUELLING and s.volume]
    assert live and {s.address for s in live} == {1, 2}
    assert {s.state for s in out.statuses} >= {NozzleState.IDLE, NozzleState.LIFTED}
    assert last_links(out.links) == {1: True, 2: True}
    # D20, seen from the pump: the poller never sent a command a POS may send.
    assert out.responder.writes == {} and out.responder.refused == 0


def test_every_sale_read_exactly_on_a_bad_line() -> None:
    out = simulate(5, fills=22, bit_error_rate=0.004, drop_rate=0.005)  # ≈3 % hit, 0.5 % lost
    assert {key: fields(s) for key, s in out.sales.items()} == {
        sim_key(s): as_sale(s) for s in out.sims
    }
    assert len(out.sales) == 44 and out.faults.dropped_bytes > 50


def test_sales_survive_a_cut_line() -> None:
    out = simulate(7, fills=10, cut=(20.0, 45.0))
    assert len(out.sales) == len(out.sims) == 20
    assert {key: fields(s) for key, s in out.sales.items()} == {
        sim_key(s): as_sale(s) for s in out.sims
    }
    assert PumpLink(1, False) in out.links and PumpLink(2, False) in out.links
    assert last_links(out.links) == {1: True, 2: True}


def last_links(links: list[PumpLink]) -> dict[int, bool]:
    return {link.address: link.online for link in links}


# ---------------------------------------------------------------- the responder alone

H = bytes.fromhex


def responder_with_sale() -> tuple[DartResponder, PumpModel, SimSale]:
    pump = PumpModel.create(3, 2, random.Random(5))  # ADR 0x52
    nozzle = pump.nozzle(2)
    pump.lift(nozzle, 1234)
    sale = pump.hang_up(nozzle, EPOCH)
    return DartResponder([pump]), pump, sale


def say(responder: DartResponder, frame: Frame, now: float = 0.0) -> Frame | None:
    wire = responder.receive_data(encode_frame(frame), now)
    if not wire:
        return None
    decoded, consumed = decode(wire)
    assert isinstance(decoded, Frame) and consumed == len(wire)
    return decoded


def test_responder_link_level() -> None:
    responder, pump, sale = responder_with_sale()
    assert say(responder, Frame.poll(0x52)) == Frame.eot(0x52, 0)  # nothing asked yet
    assert say(responder, Frame.data(0x52, 7, [build(Cd1(0))])) == Frame.ack(0x52, 7)
    reply = say(responder, Frame.poll(0x52))
    nozio = build(Dc3(sale.price, 2, False))
    assert reply == Frame.data(0x52, 0, [build(Dc1(5)), nozio, build(Dc9(pump.identity))])
    assert say(responder, Frame.poll(0x52)) == reply  # not acknowledged: the same again
    assert say(responder, Frame.nak(0x52, 0)) == reply  # NAK: again, as seq 0
    assert say(responder, Frame.ack(0x52, 0)) is None
    assert say(responder, Frame.poll(0x52)) == Frame.eot(0x52, 1)
    assert say(responder, Frame.poll(0x53)) is None  # no such pump
    pump.silent_until = 10.0
    assert say(responder, Frame.data(0x52, 8, [build(Cd1(0))]), now=5.0) is None  # powered off


@pytest.mark.parametrize(
    "transactions",
    [[(0x01, H("07"))], [(0x05, H("0007"))], [(0x01, H("00")), (0x03, H("00"))], [(0x07, H(""))]],
)
def test_responder_refuses_what_it_does_not_know(transactions: list[tuple[int, bytes]]) -> None:
    responder, _, _ = responder_with_sale()
    assert say(responder, Frame.data(0x52, 1, transactions)) == Frame.nak(0x52, 1)
    assert responder.refused == 1 and responder.writes == {}


def test_responder_acks_and_counts_a_pos_s_writes() -> None:
    """A station POS authorises and sets prices (never the collector, D20)."""
    responder, pump, _ = responder_with_sale()
    authorise = [(0x02, H("0102")), (0x01, H("06"))]  # allowed nozzles 1, 2; authorise
    assert say(responder, Frame.data(0x52, 1, authorise)) == Frame.ack(0x52, 1)
    assert say(responder, Frame.poll(0x52)) == Frame.eot(0x52, 0)  # a write asks for no answer
    prices = [(0x05, H("000799") + H("000812"))]  # nozzle 1: 7.99; nozzle 2 is busy: kept
    busy = pump.nozzle(2).price
    pump.lift(pump.nozzle(2), 500)
    assert say(responder, Frame.data(0x52, 2, prices)) == Frame.ack(0x52, 2)
    assert (pump.nozzle(1).price, pump.nozzle(2).price) == (799, busy)
    assert responder.writes == {"allowed_nozzles": 1, "authorise": 1, "price_update": 1}
    assert responder.refused == 0


def test_responder_takes_a_sale_once_dc2_and_dc101_are_acknowledged() -> None:
    responder, pump, sale = responder_with_sale()
    # DC101 alone does not deliver the sale.
    say(responder, Frame.data(0x52, 0, [build(Cd101(2))]))
    totals = say(responder, Frame.poll(0x52))
    end = (sale.totalizer_volume_end, sale.totalizer_amount_end, sale.txn_no)
    assert totals == Frame.data(0x52, 0, [build(Dc101(2, *end))])
    say(responder, Frame.ack(0x52, 0))
    assert list(pump.pending) == [sale]
    # The driver's final read: DC2 and DC101 in one frame; taken on its ACK only.
    say(responder, Frame.data(0x52, 1, [build(Cd1(4)), build(Cd101(2))]))
    final = say(responder, Frame.poll(0x52))
    assert final is not None and final.transactions == (
        build(Dc1(5)),
        build(Dc2(1234, sale.amount)),
        build(Dc3(sale.price, 2, False)),
        build(Dc101(2, *end)),
    )
    assert list(pump.pending) == [sale]
    say(responder, Frame.ack(0x52, final.seq))
    assert not pump.pending and pump.taken == 1
    assert order_no_of(sale) == str(sale.totalizer_volume_end)


def test_responder_shows_live_lifted_and_idle_nozzles() -> None:
    pump = PumpModel.create(1, 3, random.Random(1))
    responder = DartResponder([pump])
    nozzle = pump.nozzle(3)

    def status() -> tuple[tuple[int, bytes], ...]:
        say(responder, Frame.data(0x50, 0, [build(Cd1(4))]), now=2.0)
        reply = say(responder, Frame.poll(0x50), now=2.0)
        assert reply is not None
        say(responder, Frame.ack(0x50, reply.seq))
        return reply.transactions

    pump.lift(nozzle, 1000)
    assert status() == (build(Dc1(2)), build(Dc2(0, 0)), build(Dc3(nozzle.price, 3, True)))
    pump.start_fuel(nozzle, now=1.0, seconds=2.0)  # half way at 2.0
    live = (build(Dc1(4)), build(Dc2(500, nozzle.live_amount(2.0))))
    assert status() == (*live, build(Dc3(nozzle.price, 3, True)))
    pump.power_cycle()
    assert status() == (build(Dc1(1)), build(Dc2(0, 0)), build(Dc3(nozzle.price, 3, False)))


def test_responder_checks_its_pumps() -> None:
    rng = random.Random(0)
    for bad in ([PumpModel.create(33, 1, rng)], [PumpModel.create(1, 16, rng)]):
        with pytest.raises(ValueError):
            DartResponder(bad)
    with pytest.raises(ValueError):
        DartResponder([PumpModel.create(4, 1, rng), PumpModel.create(4, 2, rng)])
