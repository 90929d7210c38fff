"""LanfengMonitor in relay: every sale an FCC reads, once, with the poller's key.

:class:`FccMaster` asks what the FCC of ``fangym0335/first src/lischn017.c``
asks and in its order, each once: AD and AC at start-up (``InitPumpTotal``,
``:169``, ``:1575-1620``), B8 polls (its status, ``:1384-1440``), and at a
sale's end, after a B8 showing idle: AD, AC, then B8 if the volume totals
moved (``DoEot``, ``:897-1023``). Replies come from
:class:`tests.test_lanfeng_driver.SourcePump` (the source's layouts).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

import protocols
from protocols.events import Event, NozzleState, NozzleStatus, PumpLink, Sale, Totals
from protocols.lanfeng.driver import LanfengPoller
from protocols.lanfeng.messages import build_request
from protocols.lanfeng.monitor import LanfengMonitor
from tests.test_lanfeng_driver import EPOCH, SourcePump, expected_sale, only, settle
from tests.test_lanfeng_framer import query


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
        self.ask(0xAD)
        self.ask(0xAC)
        self.ask(0xB8)

    def sale(self, volume: int, price: int | None = None) -> None:
        pump = self.pump
        pump.state, pump.volume, pump.amount = 0xC1, 0, 0
        self.ask(0xB8)
        pump.state, pump.volume, pump.amount = 0xC2, 500, 3925
        self.ask(0xB8)
        pump.fill(volume, price)
        pump.state = 0x41
        self.ask(0xB8)  # idle: DoEot follows
        self.ask(0xAD)
        self.ask(0xAC)
        if pump.volume_total != self.known_total:
            self.ask(0xB8)
            self.known_total = pump.volume_total
        self.ask(0xB8)


def relay(monitor: LanfengMonitor, exchanges: list[tuple[bytes, bytes]]) -> list[Event]:
    events: list[Event] = []
    for request, reply in exchanges:
        events += monitor.receive_request(request)
        events += monitor.receive_response(reply)
    return events


def sales(events: list[Event]) -> list[Sale]:
    return [dataclasses.replace(s, raw=b"", ended_at=EPOCH) for s in only(events, Sale)]


def test_has_no_way_to_write_and_no_bus_monitor() -> None:
    public = {name for name in dir(LanfengMonitor) if not name.startswith("_")}
    assert public - {"STEPS", "TOTAL_DIGITS"} == {
        "name",
        "counters",
        "receive_request",
        "receive_response",
    }
    assert protocols.load_monitor("lanfeng") is LanfengMonitor
    assert "lanfeng" not in protocols.bus_monitors()


def test_every_sale_of_an_fcc_once_with_the_pollers_key() -> None:
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.start()
    expected = []
    for volume, price in ((2500, 785), (3000, 800), (3000, 800)):
        fcc.sale(volume, price)
        expected.append(expected_sale(pump, EPOCH))
    monitor = LanfengMonitor([1])
    events = relay(monitor, fcc.exchanges)
    assert sales(events) == expected  # the totals difference checks each
    assert monitor.counters["sales"] == 3 and monitor.counters["held"] == 0
    states = [e.state for e in only(events, NozzleStatus)]
    assert states[:4] == [
        NozzleState.IDLE,
        NozzleState.LIFTED,
        NozzleState.FUELLING,
        NozzleState.IDLE,
    ]
    fuelling = only(events, NozzleStatus)[2]
    assert (fuelling.volume, fuelling.amount) == (Decimal("5.00"), Decimal("39.25"))
    assert only(events, Totals)[0] == Totals(
        1, 1, Decimal("1234567890.12"), Decimal("9876543210.98")
    )
    assert only(events, PumpLink) == [PumpLink(1, True)]
    (polled,) = settle(LanfengPoller([1]), {1: pump})
    assert polled.key == expected[-1].key


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_bytes_split_anywhere_give_the_same_events(chunk: int) -> None:
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.start()
    fcc.sale(2500)
    fcc.sale(4100)
    whole = relay(LanfengMonitor([1]), fcc.exchanges)
    monitor = LanfengMonitor([1])
    split: list[Event] = []
    for request, reply in fcc.exchanges:
        for data, feed in ((request, monitor.receive_request), (reply, monitor.receive_response)):
            for i in range(0, len(data), chunk):
                split += feed(data[i : i + chunk])
    assert sales(split) == sales(whole) and len(sales(whole)) == 2


def test_first_sale_seen_after_its_end_is_checked_by_its_price() -> None:
    pump = SourcePump()
    fcc = FccMaster(pump)
    fcc.sale(2500)
    assert sales(relay(LanfengMonitor([1]), fcc.exchanges)) == [expected_sale(pump, EPOCH)]


def test_a_reply_is_read_as_the_answer_to_the_question_before_it() -> None:
    """A totals reply where the POS asked B8 is not a status, and a reply to no
    question seen is only counted."""
    pump = SourcePump()
    monitor = LanfengMonitor([1])
    events = monitor.receive_request(query(1, 0xB8))
    events += monitor.receive_response(pump.answer(query(1, 0xAD)))  # not a B8 layout
    assert [e.kind for e in events if not isinstance(e, PumpLink)] == ["bad_message"]
    events = monitor.receive_response(pump.answer(query(1, 0xB8)))
    assert [e.kind for e in events] == ["unexpected"]


def test_unanswered_requests_foreign_pumps_and_changing_commands() -> None:
    monitor = LanfengMonitor([1], offline_after=2)
    pump = SourcePump()
    events = monitor.receive_request(query(1, 0xB8))
    events += monitor.receive_response(pump.answer(query(1, 0xB8)))
    for _ in range(3):
        events += monitor.receive_request(query(1, 0xB8))
    assert only(events, PumpLink) == [PumpLink(1, True), PumpLink(1, False)]
    assert monitor.receive_request(query(3, 0xB8)) == []
    assert monitor.receive_response(SourcePump(3).answer(query(3, 0xB8))) == []
    assert monitor.foreign_addresses == {3: 2}
    # The POS authorises pump 1 (A1, lischn017.c:1189-1202); its reply is not read.
    events = monitor.receive_request(build_request(1, 0xA1))
    events += monitor.receive_response(SourcePump().frame(bytes([0, 0xA1]) + bytes(8)))
    assert only(events, PumpLink) == [PumpLink(1, True)] and only(events, Sale) == []
    assert monitor.counters["changing"] == 2
