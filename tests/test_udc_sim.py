"""The UDC monitor against the simulated pumps and the station controller.

In-process: the controller (hil/masters/udc.py) runs the loop of the source
FCC against :class:`~hil.dispenser.udc.UdcResponder`; the pumps' bytes pass
:class:`LineFaults`; the monitor reads both directions as a relay (two
streams) and as a tap (one). Every sale it reports must be one the pumps
made, with the same nozzle, price, volume, amount and totals.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hil.dispenser.faults import LineFaults
from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.udc import UdcResponder, order_no_of
from hil.masters.udc import Master
from protocols.events import Sale
from protocols.udc.monitor import UdcMonitor

T0 = datetime(2026, 11, 22, 8, 0)


def cents(value: Decimal | None) -> int | None:
    return None if value is None else int(value * 100)


def fingerprint(sale: Sale) -> tuple[int, int, int | None, int | None, int | None]:
    return (sale.address, sale.nozzle, cents(sale.price), cents(sale.volume), cents(sale.amount))


def truth_print(sale: SimSale) -> tuple[int, int, int | None, int | None, int | None]:
    return (sale.address, sale.nozzle, sale.price, sale.volume, sale.amount)


def station(
    seed: int, turns: int, faults: LineFaults, bus: bool
) -> tuple[list[SimSale], list[Sale], bytes]:
    """Fills on two pumps of two nozzles; returns (truth, the monitor's sales,
    the line as a tap saw it)."""
    rng = random.Random(seed)
    pumps = [PumpModel.create(a, 2, rng) for a in (1, 2)]
    responder = UdcResponder(pumps)
    master = Master([1, 2])
    clock = [T0]
    monitor = UdcMonitor([1, 2], clock=lambda: clock[0])
    truth: list[SimSale] = []
    sales: list[Sale] = []
    line = bytearray()
    for turn in range(turns):
        now = turn * 0.02
        clock[0] = T0 + timedelta(seconds=now)
        if turn % 50 == 5:
            pump = pumps[(turn // 50) % 2]
            nozzle = pump.nozzle(1 + (turn // 100) % 2)
            if pump.can_start(nozzle):
                pump.lift(nozzle, rng.randint(200, 8000))
        for pump in pumps:
            for nozzle in pump.nozzles:
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


@pytest.mark.parametrize("bus", [False, True], ids=["relay", "listen"])
def test_one_percent_of_bytes_hit_yields_no_wrong_sale(bus: bool) -> None:
    """Every sale is one the pumps made (the display is taken when read twice
    alike). Its totals are read once, so a byte and its complement hit at
    the same bit spoil them past the check (1 in ~10^4 reads here): such
    totals contradict the sale's own volume and amount from the nozzle's
    previous totals, which the A1 edge check flags (collector/station/edge.py)."""
    faults = LineFaults(random.Random(3), bit_error_rate=0.00125, drop_rate=0.002)
    truth, sales, _ = station(11, 4000, faults, bus)
    assert faults.flipped_bits > 100 and faults.dropped_bytes > 20
    made = {truth_print(s): s for s in truth}
    assert len(made) == len(truth) > 60
    spoilt = 0
    for sale in sales:
        sim = made[fingerprint(sale)]  # KeyError: a sale the pumps never made
        if sale.totalizer_volume_end is None or sale.totalizer_amount_end is None:
            continue
        end = (cents(sale.totalizer_volume_end), cents(sale.totalizer_amount_end))
        if end != (sim.totalizer_volume_end, sim.totalizer_amount_end):
            start = (end[0] - sim.volume, end[1] - sim.amount)
            assert start != (sim.totalizer_volume_start, sim.totalizer_amount_start)
            spoilt += 1
        elif sale.order_no != order_no_of(sim):
            pytest.fail(f"{sale.order_no} is not the volume total {order_no_of(sim)}")
    assert spoilt <= 1
    assert len({s.key for s in sales}) == len(sales), "each sale once"
    assert len(sales) >= 0.9 * len(truth)
    assert sum(s.totalizer_volume_end is not None for s in sales) >= 0.8 * len(sales)


def test_a_clean_line_yields_every_sale_with_its_totals() -> None:
    truth, sales, _ = station(5, 2500, LineFaults(), bus=True)
    assert sorted(order_no_of(s) for s in truth) == sorted(s.order_no for s in sales)


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
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=8),
)
def test_mutated_lines_never_raise_nor_invent_a_sale(
    mutations: list[tuple[str, float, int]], flips: list[tuple[float, int]]
) -> None:
    """Bytes dropped, inserted, repeated, bits flipped: no error escapes and
    every sale is one the pumps made (its nozzle may be unknown, 0). Flips are
    at least two bytes apart: the same bit flipped in a byte and in its
    complement passes the protocol's only check (docs/protocols/udc.md)."""
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
    spots = sorted(int(where * len(data)) for where, _ in flips)
    assume(all(b - a >= 2 for a, b in itertools.pairwise(spots)))
    for at, (_, bit) in zip(spots, flips, strict=True):
        data[at] ^= 1 << bit
    made = {truth_print(s) for s in truth}
    unnumbered = {(a, p, v, m) for a, _, p, v, m in made}
    monitor = UdcMonitor([1, 2], clock=lambda: T0)
    for i in range(0, len(data), 64):
        for event in monitor.receive_bus(bytes(data[i : i + 64])):
            if isinstance(event, Sale):
                address, nozzle, *values = fingerprint(event)
                assert fingerprint(event) in made or (
                    nozzle == 0 and (address, *values) in unnumbered
                )
