"""The passive Sinopec monitor sees what the poller sees (relay / listen modes).

A POS (our own poller, in-process) talks to the simulated pumps; the
monitor is fed a copy of both directions — as a relay (two streams) and as
a tap on a bus (one stream). Its sales, nozzle states, totals, identities
and alarms must be the poller's, and it never produces a byte (D20).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from hil.dispenser.model import PumpModel
from hil.dispenser.sinopec import SinopecResponder
from protocols import bus_monitors, descriptors, load_monitor, monitorable
from protocols.events import DeviceAlarm, Event, Identity, NozzleStatus, PumpLink, Sale, Totals
from protocols.sinopec.driver import SinopecPoller
from protocols.sinopec.monitor import SinopecMonitor

ADDRESSES = (1, 2)
CLOCK = datetime(2026, 11, 22, 8, 0, 0, tzinfo=timezone(timedelta(hours=8)))


def comparable(events: list[Event]) -> list[Event]:
    keep = (Sale, NozzleStatus, Totals, Identity, DeviceAlarm)
    return [e for e in events if isinstance(e, keep)]


def run_station(split: int, bus: bool) -> tuple[list[Event], list[Event], SinopecMonitor]:
    """Poll two pumps through fills, an alarm and a power loss; return
    (the poller's events, the monitor's events, the monitor)."""
    rng = random.Random(7)
    pumps = [PumpModel.create(a, 2, rng) for a in ADDRESSES]
    responder = SinopecResponder(pumps)
    poller = SinopecPoller(ADDRESSES, totals_every=7, info_every=11, errors_every=3)
    monitor = SinopecMonitor(ADDRESSES)
    seen_poller: list[Event] = []
    seen_monitor: list[Event] = []
    now = 0.0

    def feed(data: bytes, request: bool) -> None:
        # Split arbitrarily: a monitor must not depend on read boundaries.
        for i in range(0, len(data), split):
            part = data[i : i + split]
            if bus:
                seen_monitor.extend(monitor.receive_bus(part))
            elif request:
                seen_monitor.extend(monitor.receive_request(part))
            else:
                seen_monitor.extend(monitor.receive_response(part))

    for turn in range(600):
        now = turn * 0.02
        if turn % 60 == 5:
            pump = pumps[(turn // 60) % 2]
            nozzle = pump.nozzle(1 + (turn // 120) % 2)
            if pump.can_start(nozzle):
                pump.lift(nozzle, 1000 + turn)
                pump.start_fuel(nozzle, now, 0.2)
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    pump.hang_up(nozzle, CLOCK + timedelta(seconds=turn))
        if turn == 100:
            pumps[0].raise_alarm(64)
        if turn == 250:
            pumps[0].clear_alarm(64)
        if turn == 300:
            pumps[1].silent_until = now + 1.0  # a power loss: pump 2 answers nothing
        request = poller.next_request()
        assert request is not None
        feed(request, True)
        answer = responder.receive_data(request, now)
        if answer:
            feed(answer, False)
            events = poller.receive_data(answer)
        else:
            events = poller.response_timeout()
        for event in events:
            if isinstance(event, Sale):
                poller.sale_committed(event)
        seen_poller.extend(events)
    return seen_poller, seen_monitor, monitor


@pytest.mark.parametrize(("split", "bus"), [(1, False), (7, False), (4096, False), (3, True)])
def test_monitor_reports_what_the_poller_reports(split: int, bus: bool) -> None:
    polled, watched, monitor = run_station(split, bus)
    sales = [e for e in polled if isinstance(e, Sale)]
    assert len(sales) >= 8
    # The poller may read a record twice (confirmation lost): so may the monitor;
    # the store deduplicates on the key. Same records, same keys, same order.
    assert [s.key for s in watched if isinstance(s, Sale)] == [s.key for s in sales]
    assert comparable(watched) == comparable(polled)
    links = [(e.address, e.online) for e in watched if isinstance(e, PumpLink)]
    assert links == [(1, True), (2, True), (2, False), (2, True)]
    assert monitor.counters["frames"] > 0 or monitor.counters["bus_frames"] > 0


def test_monitor_has_no_way_to_speak() -> None:
    """D20: nothing in a monitor builds or returns bytes for the line."""
    public = {name for name in dir(SinopecMonitor) if not name.startswith("_")}
    assert public == {
        "name", "counters", "master_frames", "receive_request", "receive_response", "receive_bus"
    }  # fmt: skip


def test_registry() -> None:
    assert "sinopec" in monitorable() and "sinopec" in bus_monitors()
    assert load_monitor("sinopec") is SinopecMonitor
    for found in descriptors():
        if found.monitor is None:
            with pytest.raises(LookupError, match="no passive monitor"):
                load_monitor(found.name)
