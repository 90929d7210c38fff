"""CK1313 under mutated streams: nothing raises, and no sale comes out that a pump did not make.

Each reply (and, for the monitor, each request) suffers at most one
mutation: a bit flipped (bit 7 one time in eight: the check cannot see it;
tests/test_ck1313_driver.py has the repeated-flip cases), a byte
set, dropped or inserted, cut short, replaced by random bytes, random bytes
appended. Scenarios come from one seed each (the Gilbarco fuzz's pattern:
a failure prints the seed that reproduces it); modest counts here, the
long run is ``FUZZ_EXAMPLES=35000``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ck1313.driver import Ck1313Poller
from protocols.ck1313.monitor import Ck1313Monitor
from protocols.events import Sale
from tests.test_ck1313_driver import EPOCH, SourcePump, expected_sale, only
from tests.test_ck1313_monitor import FccMaster

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))

MUTATIONS = ("none",) * 6 + ("flip", "set", "drop", "insert", "cut", "random", "append")


@dataclass(frozen=True)
class Mutation:
    kind: str
    pos: int
    value: int
    blob: bytes

    @classmethod
    def draw(cls, rng: random.Random) -> Mutation:
        kind = rng.choice(MUTATIONS)
        blob = rng.randbytes(rng.randrange(20)) if kind in ("random", "append") else b""
        return cls(kind, rng.randrange(64), rng.randrange(256), blob)

    def apply(self, data: bytes) -> bytes:
        pos, kind = self.pos % (len(data) + 1), self.kind
        if kind in ("flip", "set") and pos < len(data):
            bit = 1 << self.value % 8  # bit 7 too: the check cannot see it
            byte = self.value if kind == "set" else data[pos] ^ bit
            return data[:pos] + bytes([byte]) + data[pos + 1 :]
        if kind == "drop":
            return data[:pos] + data[pos + 1 :]
        if kind == "insert":
            return data[:pos] + bytes([self.value]) + data[pos:]
        if kind == "cut":
            return data[:pos]
        if kind == "random":
            return self.blob
        if kind == "append":
            return data + self.blob
        return data


def key_values(sale: Sale) -> tuple[object, ...]:
    return (sale.address, sale.key, sale.price, sale.volume, sale.amount)


def random_pump(rng: random.Random, address: int) -> list[SourcePump]:
    """A pump's history: the sales it shows one after another (totals growing)."""
    pump = SourcePump(address, volume_total=rng.randrange(10**9), amount_total=rng.randrange(10**9))
    shown = [replace(pump)]
    for _ in range(rng.randint(1, 3)):
        volume, price = random_sale(rng)
        pump.fill(rng.choice((0, volume)), price)
        shown.append(replace(pump))
    return shown


def random_sale(rng: random.Random) -> tuple[int, int]:
    """(volume, price) with boundary values often, the amount within 6 digits."""
    price = rng.choice((100, 9999, rng.randrange(100, 10**4)))
    most = (10**8 - 51) // price  # amount = (volume × price + 50) // 100 < 10**6
    return rng.choice((1, 100, most, rng.randrange(1, most + 1))), price


def run_driver(seed: int, mutate: bool = True) -> int:
    """Sales the driver reported (each one checked against the pumps' history)."""
    rng = random.Random(seed)
    found = 0
    history = {a: random_pump(rng, a) for a in (1, 2)}
    truth = {key_values(expected_sale(p, EPOCH)) for shown in history.values() for p in shown}
    shown = {a: states[0] for a, states in history.items()}
    driver = Ck1313Poller([1, 2], clock=lambda: EPOCH, totals_every=3, offline_after=2)
    for _ in range(rng.randint(0, 60)):
        request = driver.next_request()
        assert request is not None and request[2] in Ck1313Poller.ALLOWED_COMMANDS
        address = (request[1] >> 4) - 9
        if request[2] == 0xD5:  # the pump moves on only between reads, like a real one
            shown[address] = replace(rng.choice(history[address]), status=rng.choice((0x80, 0x20)))
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


def run_monitor(seed: int, mutate: bool = True) -> int:
    """An FCC's exchanges, the first (the start-up totals read) intact: the
    monitor knows the totals before the first sale (see SaleCheck "price":
    the one unchecked path), everything after it mutated."""
    rng = random.Random(seed)
    pump = SourcePump(volume_total=rng.randrange(10**9), amount_total=rng.randrange(10**9))
    fcc = FccMaster(pump)
    fcc.start()
    truth = set()
    for _ in range(rng.randint(1, 3)):
        fcc.sale(*random_sale(rng))
        truth.add(key_values(expected_sale(pump, EPOCH)))
    exchanges = fcc.exchanges[:1] + [
        (Mutation.draw(rng).apply(request), Mutation.draw(rng).apply(reply))
        if mutate
        else (request, reply)
        for request, reply in fcc.exchanges[1:]
    ]
    relay, tap = Ck1313Monitor([1]), Ck1313Monitor([1])
    events = []
    for request, reply in exchanges:
        events += relay.receive_request(request) + relay.receive_response(reply)
        events += tap.receive_bus(reply)
    for sale in only(events, Sale):
        assert key_values(sale) in truth, (seed, sale)
    return len(only(events, Sale))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_monitor_mutated_streams_never_raise_nor_invent_a_sale(seed: int) -> None:
    run_monitor(seed)


def test_the_fuzz_scenarios_do_read_sales() -> None:
    """Not a tautology: unmutated, the scenarios yield sales; mutated, still many."""
    seeds = range(40)
    assert sum(run_driver(seed, mutate=False) for seed in seeds) > 40
    assert sum(run_monitor(seed, mutate=False) for seed in seeds) > 40
    assert sum(run_driver(seed) for seed in range(200)) > 20
    assert sum(run_monitor(seed) for seed in seeds) > 10
