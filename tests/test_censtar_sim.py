"""The Censtar monitor against the simulated pumps and the station controller.

In-process: the controller (hil/masters/censtar.py) runs the source FCC's
loop against :class:`~hil.dispenser.censtar.CenstarResponder`; the pumps'
bytes pass :class:`LineFaults`; the monitor reads both directions as a
relay and as a tap.

Censtar checks a frame with an XOR only: two flips of the same bit in one
frame pass it (at 1 % of bytes hit, a 36-byte record read about once in
150). What the collector promises on such a line: a sale is either one the
pumps made, or it carries no totals and its amount is not price × volume —
the edge check flags it (AMOUNT_MISMATCH) — and every sale with totals has
the pumps' totals. On a clean line every sale is exact.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.dispenser.censtar import CenstarResponder, order_no_of
from hil.dispenser.faults import LineFaults
from hil.dispenser.model import PumpModel, SimSale
from hil.masters.censtar import TRIES, Master
from protocols.censtar.messages import CMD_AUTHORISE
from protocols.censtar.monitor import CenstarMonitor
from protocols.events import Sale

T0 = datetime(2026, 11, 22, 8, 0)

Values = tuple[int, int, int, int]


def cents(value: Decimal) -> int:
    return int(value * 100)


def values_of(sale: Sale) -> Values:
    return (sale.address, cents(sale.price), cents(sale.volume), cents(sale.amount))


def truth_values(sale: SimSale) -> Values:
    return (sale.address, sale.price, sale.volume, sale.amount)


def station(
    seed: int, turns: int, faults: LineFaults, bus: bool
) -> tuple[list[SimSale], list[Sale], bytes]:
    """Fills on two fuelling points, the first once the controller has started."""
    rng = random.Random(seed)
    pumps = [PumpModel.create(a, 1, rng) for a in (1, 2)]
    responder = CenstarResponder(pumps)
    master = Master([1, 2])
    monitor = CenstarMonitor([1, 2], clock=lambda: T0)
    truth: list[SimSale] = []
    sales: list[Sale] = []
    line = bytearray()
    for turn in range(turns):
        now = turn * 0.02
        if turn % 50 == 40:
            pump = pumps[(turn // 50) % 2]
            if pump.can_start(pump.nozzle(1)):
                pump.lift(pump.nozzle(1), rng.randint(200, 8000))
        for pump in pumps:
            nozzle = pump.nozzle(1)
            if nozzle.state == "lifted" and pump.may_fuel(nozzle) and rng.random() < 0.2:
                pump.start_fuel(nozzle, now, 0.3)
            if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                truth.append(pump.hang_up(nozzle, T0))
        request = master.next_request()
        assert request is not None
        answer = faults.apply(responder.receive_data(request, now))
        line += request + answer
        events = monitor.receive_bus(request + answer) if bus else monitor.receive_request(request)
        if answer:
            if not bus:
                events += monitor.receive_response(answer)
            master.receive_data(answer)
        if master.awaiting_response:
            master.response_timeout()
        sales += [e for e in events if isinstance(e, Sale)]
    return truth, sales, bytes(line)


def flagged(sale: Sale) -> bool:
    """No totals, and amount ≠ price × volume: the edge check flags it."""
    mismatch = abs(sale.price * sale.volume - sale.amount) > Decimal("0.01")
    return sale.totalizer_volume_end is None and mismatch


def check_promise(truth: list[SimSale], sales: list[Sale]) -> int:
    """The module doc's promise; returns how many sales are flagged."""
    made: dict[Values, list[SimSale]] = defaultdict(list)
    for sim in truth:
        made[truth_values(sim)].append(sim)
    spoilt = 0
    for sale in sales:
        sims = made.get(values_of(sale))
        if sims is None:
            assert flagged(sale), sale
            spoilt += 1
        elif sale.totalizer_volume_end is not None:
            ends = {(s.totalizer_volume_end, s.totalizer_amount_end) for s in sims}
            assert sale.totalizer_amount_end is not None
            assert (cents(sale.totalizer_volume_end), cents(sale.totalizer_amount_end)) in ends
    assert len({s.key for s in sales}) == len(sales), "each record once"
    return spoilt


@pytest.mark.parametrize("bus", [False, True], ids=["relay", "listen"])
def test_one_percent_of_bytes_hit_yields_no_unflagged_wrong_sale(bus: bool) -> None:
    faults = LineFaults(random.Random(3), bit_error_rate=0.00125, drop_rate=0.002)
    truth, sales, _ = station(11, 4000, faults, bus)
    assert faults.flipped_bits > 100 and len(truth) > 60
    spoilt = check_promise(truth, sales)
    read = {values_of(s) for s in sales}
    assert sum(truth_values(t) in read for t in truth) >= 0.95 * len(truth)
    assert spoilt <= 2 and len(sales) <= len(truth) + spoilt


def test_a_clean_line_yields_every_sale_exactly() -> None:
    truth, sales, _ = station(5, 2500, LineFaults(), bus=True)
    expected = {
        order_no_of(s): (s.price, s.volume, s.amount, s.totalizer_volume_end) for s in truth
    }
    got = {
        s.order_no: (
            cents(s.price),
            cents(s.volume),
            cents(s.amount),
            None if s.totalizer_volume_end is None else cents(s.totalizer_volume_end),
        )
        for s in sales
    }
    assert got == expected and len(sales) == len(truth)


CLEAN = station(7, 1200, LineFaults(), bus=True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["drop", "insert", "repeat"]),
            st.floats(0, 1, exclude_max=True),
            st.integers(0, 255),
        ),
        max_size=8,
    ),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=1),
)
def test_mutated_lines_never_raise_and_spoil_no_sale_unflagged(
    mutations: list[tuple[str, float, int]], flips: list[tuple[float, int]]
) -> None:
    """Bytes dropped, inserted, repeated, one bit flipped (one: the XOR
    cannot see two of the same bit)."""
    truth, _, line = CLEAN
    data = bytearray(line)
    for op, where, value in mutations:
        at = int(where * len(data))
        if op == "drop":
            del data[at : at + 1]
        elif op == "insert":
            data.insert(at, value)
        else:
            data[at:at] = data[at : at + value]
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    monitor = CenstarMonitor([1, 2], clock=lambda: T0)
    sales: list[Sale] = []
    for i in range(0, len(data), 64):
        sales += [e for e in monitor.receive_bus(bytes(data[i : i + 64])) if isinstance(e, Sale)]
    made = {truth_values(s) for s in truth}
    assert all(values_of(s) in made or flagged(s) for s in sales)


def test_an_authorise_lost_for_good_is_sent_again() -> None:
    """Every try of the first authorise is lost (TRIES of them): the pump
    keeps calling, and the controller authorises it again
    REAUTHORISE_TURNS turns on, so the fill still ends in one sale."""
    rng = random.Random(1)
    pump = PumpModel.create(1, 1, rng)
    responder = CenstarResponder([pump])
    master = Master([1])
    lost, sold = 0, []
    for turn in range(600):
        now = turn * 0.02
        nozzle = pump.nozzle(1)
        if turn == 40:
            pump.lift(nozzle, 500)
        if nozzle.state == "lifted" and pump.may_fuel(nozzle):
            pump.start_fuel(nozzle, now, 0.3)
        if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
            sold.append(pump.hang_up(nozzle, T0))
        request = master.next_request()
        assert request is not None
        if request[1] == CMD_AUTHORISE and lost < TRIES:
            lost += 1
            master.response_timeout()
            continue
        answer = responder.receive_data(request, now)
        if answer:
            master.receive_data(answer)
        if master.awaiting_response:
            master.response_timeout()
    assert (lost, master.counters["reauthorised"], len(sold)) == (TRIES, 1, 1)
