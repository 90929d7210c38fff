"""Lanfeng under mutated streams: nothing raises, and no sale comes out that a pump did not make.

Each reply (and, for the monitor, each request) suffers at most one
mutation (tests/test_ck1313_fuzz.py: the kinds). Without a start byte a
dropped, inserted or cut byte shifts every window, and one window in 256
checks by chance: this is where the readings' checks earn their keep.
Modest counts here; ``FUZZ_EXAMPLES=35000`` for the long run.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import Sale
from protocols.lanfeng.driver import LanfengPoller
from protocols.lanfeng.monitor import LanfengMonitor
from tests.test_ck1313_fuzz import Mutation
from tests.test_lanfeng_driver import EPOCH, SourcePump, expected_sale, only
from tests.test_lanfeng_monitor import FccMaster

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))


def key_values(sale: Sale) -> tuple[object, ...]:
    return (sale.address, sale.key, sale.price, sale.volume, sale.amount)


def random_sale(rng: random.Random) -> tuple[int, int]:
    """(volume, price) with boundary values often, the amount within 6 digits."""
    price = rng.choice((100, 9999, rng.randrange(100, 10**4)))
    most = (10**8 - 51) // price  # amount = (volume × price + 50) // 100 < 10**6
    return rng.choice((1, 100, most, rng.randrange(1, most + 1))), price


def random_pump(rng: random.Random, address: int) -> list[SourcePump]:
    pump = SourcePump(
        address, volume_total=rng.randrange(10**11), amount_total=rng.randrange(10**11)
    )
    shown = [replace(pump)]
    for _ in range(rng.randint(1, 3)):
        volume, price = random_sale(rng)
        pump.fill(rng.choice((0, volume)), price)
        shown.append(replace(pump))
    return shown


def run_driver(seed: int, mutate: bool = True) -> int:
    rng = random.Random(seed)
    history = {a: random_pump(rng, a) for a in (1, 2)}
    truth = {key_values(expected_sale(p, EPOCH)) for shown in history.values() for p in shown}
    shown = {a: states[0] for a, states in history.items()}
    driver = LanfengPoller([1, 2], clock=lambda: EPOCH, totals_every=3, offline_after=2)
    found = 0
    for _ in range(rng.randint(0, 60)):
        request = driver.next_request()
        assert request is not None and request[2] in LanfengPoller.ALLOWED_COMMANDS
        address = request[0]
        if request[2] == 0xB8 and not driver.mid_exchange:  # a status poll: the pump moves on
            state = rng.choice((0x41, 0x01, 0xC2))
            shown[address] = replace(rng.choice(history[address]), state=state)
        reply = shown[address].answer(request)
        mutation = Mutation.draw(rng)
        reply = mutation.apply(reply) if mutate else reply
        cut = rng.randrange(len(reply) + 1)
        events = driver.receive_data(reply[:cut]) + driver.receive_data(reply[cut:])
        if driver.awaiting_response:
            events += driver.response_timeout()
        for sale in only(events, Sale):
            assert key_values(sale) in truth, (seed, sale)
            found += 1
            if rng.random() < 0.7:
                driver.sale_committed(sale)
    return found


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_driver_mutated_replies_never_raise_nor_invent_a_sale(seed: int) -> None:
    run_driver(seed)


def run_monitor(seed: int, mutate: bool = True, requests_too: bool = True) -> int:
    """An FCC's exchanges, its start-up reads (AD, AC, B8) intact: the monitor
    knows the totals before the first sale; everything after them mutated."""
    rng = random.Random(seed)
    pump = SourcePump(volume_total=rng.randrange(10**11), amount_total=rng.randrange(10**11))
    fcc = FccMaster(pump)
    fcc.start()
    truth = set()
    for _ in range(rng.randint(1, 3)):
        fcc.sale(*random_sale(rng))
        truth.add(key_values(expected_sale(pump, EPOCH)))
    exchanges = fcc.exchanges[:3]
    for request, reply in fcc.exchanges[3:]:
        if mutate:
            reply = Mutation.draw(rng).apply(reply)
            request = Mutation.draw(rng).apply(request) if requests_too else request
        exchanges.append((request, reply))
    monitor = LanfengMonitor([1])
    events = []
    for request, reply in exchanges:
        events += monitor.receive_request(request) + monitor.receive_response(reply)
    for sale in only(events, Sale):
        assert key_values(sale) in truth, (seed, sale)
    return len(only(events, Sale))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_monitor_mutated_streams_never_raise_nor_invent_a_sale(seed: int) -> None:
    run_monitor(seed)


def test_the_fuzz_scenarios_do_read_sales() -> None:
    """Not a tautology: unmutated, the scenarios yield sales; mutated, still some
    (a relay reading needs four exchanges intact in a row: with requests and
    replies both mutated half the time that is rare, so replies only here)."""
    seeds = range(40)
    assert sum(run_driver(seed, mutate=False) for seed in seeds) > 40
    assert sum(run_monitor(seed, mutate=False) for seed in seeds) > 40
    assert sum(run_driver(seed) for seed in range(200)) > 20
    assert sum(run_monitor(seed, requests_too=False) for seed in range(400)) > 10
