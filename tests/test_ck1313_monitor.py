"""Ck1313Monitor: relay (both pairs) and listen (the pumps' pair, or both on one input).

The master here is :class:`FccMaster`, which asks what the FCC of
``fangym0335/first src/lischn006.c`` asks and in its order, each once: C5 at
start-up (``InitPumpTotal``, ``:192``), D5 polls, D9 while fuelling
(running display, ``DoBusy``, ``:1010``, ``:1446-1457``), and at a sale's
end C5, then D9 and B6 if the totals moved (``DoEot``, ``:1092-1173``). Replies come from
:class:`tests.test_ck1313_driver.SourcePump` (the source's layouts).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

import protocols
from protocols.ck1313.driver import Ck1313Poller
from protocols.ck1313.framer import checksum
from protocols.ck1313.monitor import Ck1313Monitor
from protocols.events import Event, NozzleState, NozzleStatus, PumpLink, Sale, Totals
from tests.test_ck1313_driver import EPOCH, SourcePump, expected_sale, only, settle


def query(address: int, command: int) -> bytes:
    """F5, 0x02 | 0x90 + 16·phyfp, command, check (lischn006.c:1525-1530)."""
    head = bytes([0xF5, 0x02 | (0x9 + address) << 4, command])
    return head + bytes([checksum(head)])


class FccMaster:
    """Records the exchanges of the FCC's sequence: (request, reply) pairs."""

    def __init__(self, pump: SourcePump) -> None:
        self.pump = pump
        self.exchanges: list[tuple[bytes, bytes]] = []
        self.known_total = pump.volume_total

    def ask(self, command: int) -> None:
        request = query(self.pump.address, command)
        self.exchanges.append((request, self.pump.answer(request)))

    def start(self) -> None:
        self.ask(0xC5)  # InitPumpTotal
        self.ask(0xD5)

    def sale(self, volume: int, price: int | None = None) -> None:
        pump = self.pump
        pump.status = 0x00
        self.ask(0xD5)
        pump.status = 0x20
        pump.volume = pump.amount = 0
        self.ask(0xD5)
        self.ask(0xD9)  # running display
        pump.fill(volume, price)
        self.ask(0xD9)
        pump.status = 0x80
        self.ask(0xD5)
        self.ask(0xC5)  # DoEot: totals, then the sale and the price if they moved
        if pump.volume_total != self.known_total:
            self.ask(0xD9)
            self.ask(0xB6)
            self.known_total = pump.volume_total
        self.ask(0xD5)


def relay(monitor: Ck1313Monitor, exchanges: list[tuple[bytes, bytes]]) -> list[Event]:
    events: list[Event] = []
    for request, reply in exchanges:
        events += monitor.receive_request(request)
        events += monitor.receive_response(reply)
    return events


def listen(monitor: Ck1313Monitor, exchanges: list[tuple[bytes, bytes]], both: bool) -> list[Event]:
    stream = b"".join((request if both else b"") + reply for request, reply in exchanges)
    return monitor.receive_bus(stream)


def sales(events: list[Event]) -> list[Sale]:
    return [dataclasses.replace(s, raw=b"", ended_at=EPOCH) for s in only(events, Sale)]


def test_has_no_way_to_write() -> None:
    """D20: nothing in a monitor builds or returns bytes for the line."""
    public = {name for name in dir(Ck1313Monitor) if not name.startswith("_")}
    constants = {"STEPS", "TOTAL_DIGITS"}
    assert public - constants == {
        "name",
        "counters",
        "receive_request",
        "receive_response",
        "receive_bus",
    }
    assert protocols.load_monitor("ck1313") is Ck1313Monitor
    assert "ck1313" in protocols.bus_monitors()


@pytest.mark.parametrize("mode", ["relay", "listen", "bus"])
def test_every_sale_of_an_fcc_once_with_the_pollers_key(mode: str) -> None:
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.start()
    expected = []
    for volume, price in ((2500, 785), (3000, 800), (3000, 800)):
        fcc.sale(volume, price)
        expected.append(expected_sale(pump, EPOCH))
    monitor = Ck1313Monitor([1])
    if mode == "relay":
        events = relay(monitor, fcc.exchanges)
    else:
        events = listen(monitor, fcc.exchanges, both=mode == "bus")
    assert sales(events) == expected  # checked by the totals difference (SaleCheck "delta")
    assert monitor.counters["sales"] == 3 and monitor.counters["held"] == 0
    states = [e.state for e in only(events, NozzleStatus)]
    assert states[:4] == [
        NozzleState.IDLE,
        NozzleState.LIFTED,
        NozzleState.FUELLING,
        NozzleState.IDLE,
    ]
    assert only(events, Totals)[0] == Totals(1, 1, Decimal("12345678.90"), Decimal("98765432.10"))
    assert only(events, PumpLink) == [PumpLink(1, True)]
    # The same key the poll driver gives the last sale (the store keeps one).
    (polled,) = settle(Ck1313Poller([1]), {1: pump})
    assert polled.key == expected[-1].key


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_bytes_split_anywhere_give_the_same_events(chunk: int) -> None:
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.start()
    fcc.sale(2500)
    fcc.sale(4100)
    whole = relay(Ck1313Monitor([1]), fcc.exchanges)
    monitor = Ck1313Monitor([1])
    split: list[Event] = []
    for request, reply in fcc.exchanges:
        for data, feed in ((request, monitor.receive_request), (reply, monitor.receive_response)):
            for i in range(0, len(data), chunk):
                split += feed(data[i : i + chunk])
    assert sales(split) == sales(whole) and len(sales(whole)) == 2


def test_first_sale_seen_is_checked_by_its_price() -> None:
    """Started after the FCC's start-up: no earlier totals, the price relation checks it."""
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.sale(2500)
    monitor = Ck1313Monitor([1])
    assert sales(relay(monitor, fcc.exchanges)) == [expected_sale(pump, EPOCH)]


def test_a_first_sale_nothing_can_check_is_not_reported_the_next_is() -> None:
    """The first sale seen has amount ≠ price × volume (the pump's own rounding
    fault) and no earlier totals: nothing checks it, so it is rejected (the
    documented cost; a POS that reads twice, or a poll port, has it). The
    next sale is checked by the totals difference from it."""
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.sale(2500)
    pump.amount_total += 7  # the sale's amount is 0.07 off price × volume ...
    pump.amount += 7
    fcc.exchanges[-4:] = []  # ... so replay its end with the new values
    fcc.ask(0xC5)
    fcc.ask(0xD9)
    fcc.ask(0xB6)
    first = expected_sale(pump, EPOCH)
    monitor = Ck1313Monitor([1])
    assert sales(relay(monitor, fcc.exchanges)) == []
    assert monitor.counters["rejected"] == 1  # inconsistent and unprovable: not held either
    fcc.exchanges.clear()
    fcc.sale(3000)
    second = expected_sale(pump, EPOCH)
    got = sales(relay(monitor, fcc.exchanges))
    assert got == [second] and first.key != second.key


def test_a_missed_sale_delays_the_next_by_one_sale_not_loses_it() -> None:
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.start()
    monitor = Ck1313Monitor([1])
    relay(monitor, fcc.exchanges)
    fcc.exchanges.clear()
    fcc.sale(2500)  # the monitor misses this one (line cut)
    fcc.exchanges.clear()
    fcc.sale(3000)
    second = expected_sale(pump, EPOCH)
    assert sales(relay(monitor, fcc.exchanges)) == []
    assert monitor.counters["held"] == 1
    fcc.exchanges.clear()
    fcc.sale(4000)
    third = expected_sale(pump, EPOCH)
    assert sales(relay(monitor, fcc.exchanges)) == [second, third]


def test_a_sale_value_flipped_in_bit_7_is_not_reported() -> None:
    """The check cannot see it (framer doc); the totals difference can."""
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.start()
    fcc.sale(2500)
    request, reply = fcc.exchanges[-3]
    assert request[2] == 0xD9
    spoilt = bytearray(reply)
    spoilt[3] ^= 0x80  # 25.00 L → 2025.00 L
    fcc.exchanges[-3] = (request, bytes(spoilt))
    monitor = Ck1313Monitor([1])
    assert sales(relay(monitor, fcc.exchanges)) == []


def test_unanswered_requests_take_a_pump_offline_foreign_and_changing_counted() -> None:
    monitor = Ck1313Monitor([1], offline_after=2)
    pump = SourcePump()
    events = monitor.receive_request(query(1, 0xD5))
    events += monitor.receive_response(pump.answer(query(1, 0xD5)))
    for _ in range(3):
        events += monitor.receive_request(query(1, 0xD5))
    assert only(events, PumpLink) == [PumpLink(1, True), PumpLink(1, False)]
    other = SourcePump(address=2)
    assert monitor.receive_request(query(2, 0xD5)) == []
    assert monitor.receive_response(other.answer(query(2, 0xD5))) == []
    assert monitor.foreign_addresses == {2: 2} and monitor.counters["foreign"] == 2
    # The POS authorises pump 1 (C3) and the pump acknowledges 59 (lischn006.c:1384-1408).
    ack_head = bytes([0xF5, 0xA3, 0x59, 0xC3])
    events = monitor.receive_request(query(1, 0xC3))
    events += monitor.receive_response(ack_head + bytes([checksum(ack_head)]))
    assert only(events, PumpLink) == [PumpLink(1, True)]
    assert monitor.counters["changing"] == 2


@pytest.mark.parametrize("protocol", ["ck1313", "lanfeng"])
def test_the_port_config_reaches_the_totals_monitors(protocol: str) -> None:
    """collector.assembly.make_monitor: a monitor whose constructor passes
    ``**options`` on gets its base's options all the same — the port's
    decimals and the station's clock (a relay's sales were stamped with the
    machine's own zone, 8 h off on a UTC host with a +08:00 station)."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from collector.assembly import make_monitor
    from config.models_ports import PortConfig

    port = PortConfig(
        number=1, device="/dev/ttyS1", protocol=protocol, mode="relay", addresses=[1],
        pos_device="/dev/ttyS2", **{protocol: {"volume_decimals": 3, "price_decimals": 3}},
    )  # fmt: skip
    tz = timezone(timedelta(hours=8))
    monitor = make_monitor(port, tz)
    assert (monitor._dp.volume, monitor._dp.price) == (3, 3)
    assert abs(monitor._clock() - datetime.now(tz).replace(tzinfo=None)) < timedelta(minutes=1)
    assert Decimal(1).scaleb(-monitor._dp.amount) == Decimal("0.01")
