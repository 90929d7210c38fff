"""GilbarcoMonitor: the passive reader of relay and listen ports, in-process.

A master (our poller, or one that polls as the open FCC does:
hil/fcc_gilbarco.py) drives the simulated pumps; the monitor reads the same
bytes as a relay (two directions, split at 1, 7 and 4096 bytes) or as a tap
on the loop (one line, with and without the echo), and must report exactly
the sales the pumps made, with the poller's keys.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hil.dispenser.gilbarco import GilbarcoResponder
from hil.dispenser.model import PumpModel
from hil.fcc_gilbarco import GilbarcoFcc
from protocols import bus_monitors, descriptor, load_monitor, monitorable
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale
from protocols.gilbarco.driver import GilbarcoPoller
from protocols.gilbarco.messages import (
    GradeTotals,
    TotalsData,
    TransactionData,
    encode_frame,
    running_words,
    totals_body,
    transaction_body,
)
from protocols.gilbarco.monitor import GilbarcoMonitor

PUMP_CLOCK = datetime(2026, 5, 1, tzinfo=UTC)
TICK_S = 0.05


def conversation(
    master: Any, fills: int, seed: int
) -> tuple[list[tuple[bytes, bytes]], set[str], list[Sale]]:
    """Run ``master`` against two simulated pumps (2 nozzles each) that make
    ``fills`` sales; return every exchange (request, echo + reply), the keys
    the pumps' sales must have, and the sales the master read."""
    rng = random.Random(seed)
    pumps = [PumpModel.create(a, 2, rng) for a in (1, 2)]
    responder = GilbarcoResponder(pumps)
    exchanges: list[tuple[bytes, bytes]] = []
    truth: set[str] = set()
    read: list[Sale] = []
    now, made = 0.0, 0
    schedule = {40 * k + 5: k for k in range(fills)}  # a fill every 2 s, pumps in turn
    for tick in range(40 * fills + 200):
        now += TICK_S
        if tick in schedule:
            k = schedule[tick]
            pump, nozzle = pumps[k % 2], pumps[k % 2].nozzle(1 + k // 2 % 2)
            pump.lift(nozzle, rng.randint(200, 5000))
            pump.start_fuel(nozzle, now + 0.2, 0.8)
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    sale = pump.hang_up(nozzle, PUMP_CLOCK)
                    truth.add(f"{sale.nozzle}:{sale.totalizer_volume_end:08d}")
                    made += 1
        request = master.next_request()
        reply = responder.receive_data(request, now)
        events = master.receive_data(reply)
        if master.awaiting_response:
            events += master.response_timeout()
        for event in events:
            if isinstance(event, Sale):
                read.append(event)
                master.sale_committed(event)
        exchanges.append((request, reply))
    assert made == fills and all(not p.pending for p in pumps)
    return exchanges, truth, read


def feed_relay(
    monitor: GilbarcoMonitor, exchanges: list[tuple[bytes, bytes]], split: int
) -> list[Event]:
    events: list[Event] = []
    for request, reply in exchanges:
        events += monitor.receive_request(request)
        for i in range(0, len(reply), split):
            events += monitor.receive_response(reply[i : i + split])
    return events


def feed_bus(
    monitor: GilbarcoMonitor, exchanges: list[tuple[bytes, bytes]], echo: bool
) -> list[Event]:
    """A tap on the loop sees each command once (``echo=False``); a line that
    also carries the loop's echo (the master's own receive line) twice."""
    line = b"".join(
        request + (reply if echo else reply[len(request) :]) for request, reply in exchanges
    )
    events: list[Event] = []
    for i in range(0, len(line), 7):
        events += monitor.receive_bus(line[i : i + 7])
    return events


def sales(events: list[Event]) -> list[Sale]:
    return [e for e in events if isinstance(e, Sale)]


@pytest.mark.parametrize("split", [1, 7, 4096])
def test_relay_reports_the_pollers_sales(split: int) -> None:
    exchanges, truth, read = conversation(GilbarcoPoller([1, 2]), fills=8, seed=1)
    monitor = GilbarcoMonitor([1, 2])
    seen = sales(feed_relay(monitor, exchanges, split))
    assert sorted(s.key for s in read) == sorted(truth)
    # The same sales, the same keys and values (ended_at: each reader's own clock).
    strip = lambda s: (s.address, s.key, s.price, s.volume, s.amount, s.totalizer_volume_end, s.raw)  # noqa: E731
    assert sorted(map(strip, seen)) == sorted(map(strip, read))
    c = monitor.counters
    assert c["sales"] == 8 and c["unconfirmed_sales"] == 0 and c["echo"] == len(exchanges)
    assert c["garbage_bytes"] == c["bad_lrc"] == c["unexpected"] == 0


@pytest.mark.parametrize("echo", [False, True])
def test_a_tap_reports_the_pollers_sales(echo: bool) -> None:
    exchanges, truth, _ = conversation(GilbarcoPoller([1, 2]), fills=8, seed=2)
    monitor = GilbarcoMonitor([1, 2])
    events = feed_bus(monitor, exchanges, echo)
    assert sorted(s.key for s in sales(events)) == sorted(truth)
    assert not [e for e in events if isinstance(e, ProtocolError)]
    assert monitor.counters["requests"] == len(exchanges)


def test_an_fcc_masters_single_readings_add_up() -> None:
    """The FCC reads the transaction once; the totals before the fill and
    after it confirm it by arithmetic (monitor module doc)."""
    fcc = GilbarcoFcc([1, 2])
    exchanges, truth, read = conversation(fcc, fills=8, seed=3)
    assert sorted(s.key for s in read) == sorted(truth)
    for feed in (lambda m: feed_relay(m, exchanges, 7), lambda m: feed_bus(m, exchanges, False)):
        monitor = GilbarcoMonitor([1, 2])
        assert sorted(s.key for s in sales(feed(monitor))) == sorted(truth)
        assert monitor.counters["unconfirmed_sales"] == 0


TXN = encode_frame(transaction_body(TransactionData(1, 2, 836, 2000, 16_720)))
BEFORE = TotalsData((GradeTotals(2, 10_000_000, 80_000_000),))
AFTER = TotalsData((GradeTotals(2, 10_002_000, 80_016_720),))


def ask(monitor: GilbarcoMonitor, command: int, reply: bytes) -> list[Event]:
    return monitor.receive_bus(bytes([command]) + reply)


def test_one_reading_alone_waits_for_the_next_fill() -> None:
    """No repeat, no totals before: the sale comes when the pump starts its
    next fill (the master will not read it again), counted unconfirmed."""
    monitor = GilbarcoMonitor([1])
    ask(monitor, 0x01, b"\xa1")
    assert not sales(ask(monitor, 0x41, TXN) + ask(monitor, 0x51, encode_frame(totals_body(AFTER))))
    (sale,) = sales(ask(monitor, 0x01, b"\x71") + ask(monitor, 0x01, b"\x91"))  # 7: not yet; 9: now
    assert (sale.key, sale.volume) == ("2:10002000", Decimal("20.00"))
    assert monitor.counters["unconfirmed_sales"] == 1


def test_a_reading_unlike_the_last_replaces_it() -> None:
    """A corrupted frame that passed the 4-bit LRC is never confirmed."""
    wrong = encode_frame(transaction_body(TransactionData(1, 2, 836, 2001, 16_720)))
    after = encode_frame(totals_body(AFTER))
    monitor = GilbarcoMonitor([1])
    ask(monitor, 0x51, encode_frame(totals_body(BEFORE)))  # idle totals: "before"
    ask(monitor, 0x01, b"\x91")  # the fill
    ask(monitor, 0x01, b"\xa1")
    assert not sales(ask(monitor, 0x41, wrong) + ask(monitor, 0x51, after))  # does not add up
    (sale,) = sales(ask(monitor, 0x41, TXN))  # adds up: 10 002 000 − 10 000 000 = 2000
    assert sale.key == "2:10002000" and sale.volume == Decimal("20.00")
    assert not sales(ask(monitor, 0x41, TXN) + ask(monitor, 0x51, after))  # once
    assert monitor.counters["unconfirmed_sales"] == 0


def test_another_hoses_totals_may_move_between_readings() -> None:
    """Totals readings agree when the sale's grade agrees (as the poller reads)."""
    other = TotalsData((GradeTotals(1, 5, 6), *AFTER.grades))
    moved = TotalsData((GradeTotals(1, 7, 8), *AFTER.grades))
    monitor = GilbarcoMonitor([1])
    ask(monitor, 0x01, b"\xa1")
    ask(monitor, 0x41, TXN)
    ask(monitor, 0x41, TXN)
    assert not sales(ask(monitor, 0x51, encode_frame(totals_body(other))))
    (sale,) = sales(ask(monitor, 0x51, encode_frame(totals_body(moved))))
    assert sale.key == "2:10002000"


def test_states_link_and_foreign_pumps() -> None:
    monitor = GilbarcoMonitor([1], offline_after=2)
    assert ask(monitor, 0x01, b"\x61") == [PumpLink(1, True), NozzleStatus(1, 0, NozzleState.IDLE)]
    assert ask(monitor, 0x01, b"\x61") == []  # unchanged: skipped
    assert ask(monitor, 0x01, b"\x91") == [NozzleStatus(1, 0, NozzleState.FUELLING)]
    assert ask(monitor, 0x61, running_words(1234)) == [
        NozzleStatus(
            1, 0, NozzleState.FUELLING, amount=12.34 and __import__("decimal").Decimal("12.34")
        )
    ]
    assert monitor.receive_request(b"\x01") + monitor.receive_request(b"\x01") == []
    assert monitor.receive_request(b"\x01") == [PumpLink(1, False)]  # the second had its chance
    assert ask(monitor, 0x03, b"\x63") == [] and monitor.foreign_addresses == {3: 2}
    assert ask(monitor, 0x01, b"\x71")[:1] == [PumpLink(1, True)]
    assert monitor.receive_bus(b"\x11\x11") == []  # authorise: no reply expected, the echo


def test_monitor_has_no_way_to_speak() -> None:
    """D20: nothing in a monitor builds or returns bytes for the line."""
    public = {name for name in dir(GilbarcoMonitor) if not name.startswith("_")}
    assert public == {"name", "counters", "receive_request", "receive_response", "receive_bus"}


def test_registry() -> None:
    assert "gilbarco" in monitorable() and "gilbarco" in bus_monitors()
    assert load_monitor("gilbarco") is GilbarcoMonitor
    found = descriptor("gilbarco").load("census")(b"\x01\x61")
    assert found.good_frames == 1 and found.addresses == frozenset({1})


_RUNS: dict[int, tuple[list[tuple[bytes, bytes]], set[str], list[Sale]]] = {}


def _run(seed: int) -> tuple[list[tuple[bytes, bytes]], set[str], list[Sale]]:
    if seed not in _RUNS:
        _RUNS[seed] = conversation(GilbarcoPoller([1, 2]), fills=4, seed=seed)
    return _RUNS[seed]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 255)), max_size=6),
    st.booleans(),
)
# An E0 word inserted in a transaction's price: the LRC and the totals'
# arithmetic both pass, and 8.36 was read as 83.60.
@example(seed=0, mutations=[(1209, 3, 224)], relay=False)
def test_mutated_streams_never_raise_nor_invent_a_sale(
    seed: int, mutations: list[tuple[int, int, int]], relay: bool
) -> None:
    """Up to six single-byte mutations (a bit flipped, a byte set, dropped,
    inserted) anywhere on the line: nothing raises, and every sale out is one
    of the pumps' own, field for field."""
    exchanges, _, read = _run(seed)
    line = bytearray(b"".join(request + reply for request, reply in exchanges))
    sides = bytearray(
        b"".join(bytes([1]) + bytes(len(reply)) for _, reply in exchanges)
    )  # 1: master
    for where, kind, value in mutations:
        i = where % len(line)
        if kind == 0:
            line[i] ^= 1 << value % 8
        elif kind == 1:
            line[i] = value
        elif kind == 2:
            del line[i], sides[i]
        else:
            line.insert(i, value)
            sides.insert(i, sides[i])
    monitor = GilbarcoMonitor([1, 2])
    events: list[Event] = []
    if relay:
        start = 0
        for i in range(1, len(line) + 1):
            if i == len(line) or sides[i] != sides[start]:
                chunk = bytes(line[start:i])
                events += (
                    monitor.receive_request(chunk)
                    if sides[start]
                    else monitor.receive_response(chunk)
                )
                start = i
    else:
        events = monitor.receive_bus(bytes(line))
    real = {
        (s.key, s.price, s.volume, s.amount, s.totalizer_volume_end, s.totalizer_amount_end)
        for s in read
    }
    for sale in sales(events):
        assert (
            sale.key,
            sale.price,
            sale.volume,
            sale.amount,
            sale.totalizer_volume_end,
            sale.totalizer_amount_end,
        ) in real


def test_a_price_that_does_not_add_up_is_stored_not_dropped() -> None:
    """A master that reads each data frame once, on a port set with the wrong
    price decimals: no reading's money is its price × volume, yet every sale
    the totals confirm is emitted as read (the edge checks flag its amount);
    only the first sale of each pump, with no earlier totals, is unresolved."""
    emitted: list[Sale] = []
    unresolved = 0
    for seed in range(3):
        exchanges, _, read = _run(seed)
        monitor = GilbarcoMonitor([1, 2], price_decimals=3)
        seen: set[tuple[bytes, bytes]] = set()
        events: list[Event] = []
        for request, reply in exchanges:
            if len(reply) > 8:  # a data frame: read once
                if (request, reply) in seen:
                    continue
                seen.add((request, reply))
            events += monitor.receive_request(request) + monitor.receive_response(reply)
        by_key = {s.key: s for s in read}
        for sale in sales(events):
            assert by_key[sale.key].price == sale.price * 10
            assert (sale.volume, sale.amount) == (by_key[sale.key].volume, by_key[sale.key].amount)
        emitted += sales(events)
        unresolved += sum(isinstance(e, ProtocolError) and e.kind == "unresolved" for e in events)
    assert (len(emitted), unresolved) == (6, 6)
