"""The passive DART monitor sees what the poller sees (relay / listen modes).

A POS (our own poller, in-process, plus the commands a real POS sends:
authorise, price update) talks to the simulated pumps; the monitor is fed
a copy of both directions — as a relay (two streams) and as a tap on a bus
(one stream). Its sales, nozzle states, totals, identities and alarms must
be the poller's, and it never produces a byte (D20). Frames captured on a
live Wayne bus (moduslightstech-lgtm/intelipump,
tests/fixtures/dart/captured_frames.json, "dataFrames", CRC checked there
against CRC-16/ARC as protocols.md §3 says) are read to the values their
layout (protocols.md §3) gives.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.dispenser.dart import DartResponder
from hil.dispenser.faults import LineFaults
from hil.dispenser.model import PumpModel, SimSale
from protocols import bus_monitors, load_monitor, monitorable
from protocols.dart.driver import DartPoller
from protocols.dart.framer import Frame, encode_frame
from protocols.dart.messages import Cd1, build
from protocols.dart.monitor import DartMonitor
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleState,
    NozzleStatus,
    PumpLink,
    Sale,
    Totals,
)

ADDRESSES = (1, 2)
CLOCK = datetime(2026, 11, 22, 8, 0, 0)
H = bytes.fromhex


def comparable(events: list[Event]) -> list[Event]:
    keep = (Sale, NozzleStatus, Totals, Identity, DeviceAlarm)
    return [e for e in events if isinstance(e, keep)]


class Pos:
    """What a station POS sends between its reads now and then (never the collector)."""

    def __init__(self, pumps: list[PumpModel]) -> None:
        self.pumps = pumps
        self.due: list[tuple[str, PumpModel]] = []

    def command(self, turn: int, poller: DartPoller) -> bytes | None:
        pump = self.pumps[(turn // 40) % 2]
        if turn % 40 == 17:
            self.due.append(("authorise", pump))
        if turn % 80 == 37:
            self.due.append(("prices", pump))
        if poller.mid_exchange or not self.due:
            return None
        what, pump = self.due.pop(0)
        adr = 0x4F + pump.address
        if what == "authorise":  # allowed nozzles 1, 2, then authorise
            return encode_frame(Frame.data(adr, 9, [(0x02, H("0102")), build(Cd1(6))]))
        # The same prices again: a price update that changes nothing.
        prices = b"".join(bytes.fromhex(f"{n.price:06d}") for n in pump.nozzles)
        return encode_frame(Frame.data(adr, 10, [(0x05, prices)]))


def run_station(
    split: int, bus: bool, turns: int = 900, line: LineFaults | None = None
) -> tuple[list[Event], list[Event], DartMonitor, list[SimSale], DartResponder]:
    """Poll two pumps through fills, an alarm, a power loss and a POS's own
    commands (``line``: the pumps' answers go through it, for both listeners);
    return (poller's events, monitor's events, monitor, sales, pumps' wire)."""
    rng = random.Random(7)
    pumps = [PumpModel.create(a, 2, rng) for a in ADDRESSES]
    responder = DartResponder(pumps)
    poller = DartPoller(ADDRESSES, clock=lambda: CLOCK)
    monitor = DartMonitor(ADDRESSES, clock=lambda: CLOCK)
    pos = Pos(pumps)
    seen_poller: list[Event] = []
    seen_monitor: list[Event] = []
    sims: list[SimSale] = []

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

    for turn in range(turns):
        now = turn * 0.02
        pump = pumps[(turn // 60) % 2]
        nozzle = pump.nozzle(1 + (turn // 120) % 2)
        if turn % 60 == 5 and pump.can_start(nozzle):
            pump.lift(nozzle, 1000 + turn)
        elif turn % 60 == 15 and nozzle.state == "lifted":
            pump.start_fuel(nozzle, now, 0.2)
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    sims.append(pump.hang_up(nozzle, CLOCK + timedelta(seconds=turn)))
        if turn == 100:
            pumps[0].raise_alarm(64)
        if turn == 250:
            pumps[0].clear_alarm(64)
        if turn == 300:
            pumps[1].silent_until = now + 1.0  # a power loss: pump 2 answers nothing
        command = pos.command(turn, poller)
        if command is not None:
            feed(command, True)
            feed(responder.receive_data(command, now), False)
        request = poller.next_request()
        assert request is not None
        feed(request, True)
        answer = responder.receive_data(request, now)
        if line is not None:
            answer = line.apply(answer)
        events = []
        if answer:
            feed(answer, False)
            events = poller.receive_data(answer)
        if poller.awaiting_response:
            events += poller.response_timeout()
        for event in events:
            if isinstance(event, Sale):
                poller.sale_committed(event)
        seen_poller.extend(events)
    return seen_poller, seen_monitor, monitor, sims, responder


@pytest.mark.parametrize(("split", "bus"), [(1, False), (7, False), (4096, False), (3, True)])
def test_monitor_reports_what_the_poller_reports(split: int, bus: bool) -> None:
    polled, watched, monitor, sims, responder = run_station(split, bus)
    sales = [e for e in polled if isinstance(e, Sale)]
    assert len(sales) >= 8 and len(sales) == len(sims)
    # The same sales with the same keys, in the same order (the store
    # deduplicates on the key), and every other event the poller reported.
    assert [s.key for s in watched if isinstance(s, Sale)] == [s.key for s in sales]
    assert comparable(watched) == comparable(polled)
    assert {e.state for e in watched if isinstance(e, NozzleStatus)} >= {
        NozzleState.IDLE,
        NozzleState.LIFTED,
        NozzleState.FUELLING,
    }
    assert any(isinstance(e, DeviceAlarm) and not e.active for e in watched)
    links = [(e.address, e.online) for e in watched if isinstance(e, PumpLink)]
    assert links == [(1, True), (2, True), (2, False), (2, True)]
    c = monitor.counters
    assert (c["bus_frames"] if bus else c["frames"] + c["pos_frames"]) > 1000
    # The POS's own commands were seen and only counted; the pumps took them.
    assert c["pos_cmd_authorise"] == c["pos_cmd_allowed_nozzles"] >= 20
    assert c["pos_cmd_price_update"] >= 10 and c["pos_cmd_return_status"] > 100
    assert responder.writes["authorise"] == c["pos_cmd_authorise"]
    assert c["unknown_side"] == 0 and c["foreign"] == 0


@pytest.mark.parametrize("bus", [False, True])
def test_a_noisy_line_costs_no_sale_and_invents_none(bus: bool) -> None:
    """1 % of the pumps' bytes hit (poller and monitor hear the same line)."""
    line = LineFaults(random.Random(3), bit_error_rate=0.00125)
    polled, watched, monitor, sims, _ = run_station(5, bus, turns=3000, line=line)
    truth = {(s.address, f"{s.nozzle}:{s.totalizer_volume_end}", s.volume) for s in sims}
    seen = {(s.address, s.key, int(s.volume.scaleb(2))) for s in watched if isinstance(s, Sale)}
    polled_keys = {(s.address, s.key) for s in polled if isinstance(s, Sale)}
    assert seen <= truth and len(truth) >= 30
    assert {(a, k) for a, k, _ in seen} == polled_keys  # what the POS read, the tap read
    c = monitor.counters
    assert line.flipped_bits > 50 and c["bus_bad_crc" if bus else "bad_crc"] > 10


def test_monitor_has_no_way_to_speak() -> None:
    """D20: nothing in a monitor builds or returns bytes for the line."""
    public = {name for name in dir(DartMonitor) if not name.startswith("_")}
    assert public == {"name", "counters", "receive_request", "receive_response", "receive_bus"}


def test_registry() -> None:
    assert "dart" in monitorable() and "dart" in bus_monitors()
    assert load_monitor("dart") is DartMonitor


# ------------------------------------------------------------ captured frames

#: Frames captured on a live Wayne bus (module doc), byte for byte.
CAPTURED = {
    "poll": H("5120FA"),
    "cd1_status": H("51300101" "00A29C03FA"),  # CD1 DCC 00 return status
    "dc1_dc3": H("513C010105030400117501" "1AC703FA"),  # DC1 5; DC3 11.75, nozzle 1 in
    "cd101": H("51316501" "01237F03FA"),  # CD101 COUN 1
    "dc101": H("513D651001" "0000000002" "0000000002" "0000000000" "58F803FA"),
    "dc2_dc3_dc1": H("513A0208" "0000000000000000" "030400117501" "010105" "602703FA"),
    "cd5": H("5134050300" "1175" "454203FA"),  # CD5: nozzle 1 at 11.75
    # DC2, DC3 (nozzle 7), DC1 5, DC101 of nozzle 1; CRC-H is FA: sent as 10 FA.
    "dc101_escaped": H(
        "503E0208" "0000000000000000" "030400990707" "010105"
        "651001" "1336384966" "1336384966" "0000000000" "3910FA03FA"
    ),
}  # fmt: skip


def ack(seq: int, adr: int = 0x51) -> bytes:
    return encode_frame(Frame.ack(adr, seq))


def test_captured_conversation_on_a_bus_reads_to_its_layout() -> None:
    """A POS reading status, then fill and totals apart (as the capture's own
    master does: CD101 alone), on one pair; frames in a master's order."""
    monitor = DartMonitor([2], clock=lambda: CLOCK)  # ADR 0x51 is pump 2
    stream = [
        CAPTURED["cd1_status"], ack(0x0),  # DATA (master: no POLL before it), its ACK
        CAPTURED["poll"], CAPTURED["dc1_dc3"], ack(0xC),  # the pump's answer, the ACK
        CAPTURED["poll"], CAPTURED["dc2_dc3_dc1"], ack(0xA),  # the completed fill
        CAPTURED["cd101"], ack(0x1),  # totals asked apart ...
        CAPTURED["poll"], CAPTURED["dc101"], ack(0xD),  # ... in the pump's next frame
        CAPTURED["cd5"], ack(0x4),  # a price update from the POS
    ]  # fmt: skip
    events = monitor.receive_bus(b"".join(stream))
    assert [e for e in events if isinstance(e, PumpLink)] == [PumpLink(2, True)]
    price = Decimal("11.75")
    statuses = [e for e in events if isinstance(e, NozzleStatus)]
    assert statuses == [
        NozzleStatus(2, 1, NozzleState.IDLE, None, None, price),
        NozzleStatus(2, 1, NozzleState.IDLE, None, None, price),
    ]
    (sale,) = [e for e in events if isinstance(e, Sale)]
    assert (sale.address, sale.nozzle, sale.key, sale.order_no) == (2, 1, "1:2", "2")
    assert (sale.volume, sale.amount, sale.price) == (Decimal("0.00"), Decimal("0.00"), price)
    assert (sale.totalizer_volume_end, sale.totalizer_amount_end) == (
        Decimal("0.02"),
        Decimal("0.02"),
    )
    assert sale.ended_at == CLOCK
    c = monitor.counters
    assert (c["pos_cmd_return_status"], c["pos_cmd_request_totals"]) == (1, 1)
    assert c["pos_cmd_price_update"] == 1 and c["unknown_side"] == 0
    assert c["unconfirmed_answers"] == 0 and c["bus_frames"] == len(stream)


def test_captured_totals_of_another_nozzle_are_totals() -> None:
    """DC3 names nozzle 7, DC101 nozzle 1: no sale; the totals as they are."""
    monitor = DartMonitor([1], clock=lambda: CLOCK)
    events = monitor.receive_bus(CAPTURED["poll"].replace(b"\x51", b"\x50", 1))
    events += monitor.receive_bus(CAPTURED["dc101_escaped"] + ack(0xE, 0x50))
    assert not any(isinstance(e, Sale) for e in events)
    assert Totals(1, 1, Decimal("13363849.66"), Decimal("13363849.66")) in events
    assert NozzleStatus(1, 7, NozzleState.IDLE, None, None, Decimal("99.07")) in events


def test_relay_reads_the_same_captured_frames() -> None:
    monitor = DartMonitor([2], clock=lambda: CLOCK)
    monitor.receive_request(CAPTURED["poll"])
    events = monitor.receive_response(CAPTURED["dc2_dc3_dc1"])
    monitor.receive_request(ack(0xA) + CAPTURED["cd101"])
    events += monitor.receive_response(ack(0x1))
    monitor.receive_request(CAPTURED["poll"])
    events += monitor.receive_response(CAPTURED["dc101"])
    assert [e.key for e in events if isinstance(e, Sale)] == ["1:2"]


# ------------------------------------------------------------ which side spoke


def test_the_masters_data_after_an_unanswered_poll_is_not_the_pumps() -> None:
    """POLL, no answer, then the master's CD1 00 to the same pump: read alone,
    ``01 01 00`` would be DC1 0 "not programmed" from the pump."""
    monitor = DartMonitor([2], clock=lambda: CLOCK)
    status = CAPTURED["cd1_status"]
    events = monitor.receive_bus(CAPTURED["poll"] + status + status + status + CAPTURED["poll"])
    assert events == [PumpLink(2, False)]  # nothing from the pump; five requests unanswered
    c = monitor.counters
    assert c["unconfirmed_answers"] == 1 and c["pos_cmd_return_status"] == 3
    assert c["responses"] == 0 and c["requests"] == 5


def test_an_answer_whose_ack_was_hit_is_still_the_pumps() -> None:
    monitor = DartMonitor([2], clock=lambda: CLOCK)
    garbled = b"\x51\xca\x10"  # the master's ACK, hit: garbage, then the next POLL
    events = monitor.receive_bus(CAPTURED["poll"] + CAPTURED["dc1_dc3"] + garbled)
    events += monitor.receive_bus(CAPTURED["poll"])
    assert NozzleStatus(2, 1, NozzleState.IDLE, None, None, Decimal("11.75")) in events


@pytest.mark.parametrize(
    "stream",
    [
        ack(0x3),  # an ACK with nothing before it
        b"\x00\x00" + ack(0x3),  # an ACK after noise
        CAPTURED["poll"] + ack(0x3),  # an ACK to a POLL
    ],
)
def test_link_frames_of_no_known_side_are_dropped(stream: bytes) -> None:
    monitor = DartMonitor([2])
    events = monitor.receive_bus(stream)
    assert not any(isinstance(e, PumpLink) and e.online for e in events)
    assert monitor.counters["unknown_side"] == 1


def test_a_frame_claiming_both_sides_is_dropped() -> None:
    both = encode_frame(Frame.data(0x51, 3, [(0x65, b"\x01"), (0x65, H("01" + "00" * 15))]))
    monitor = DartMonitor([2])
    assert monitor.receive_bus(both) == []
    assert monitor.counters["unknown_side"] == 1


def test_foreign_pumps_are_counted_by_number() -> None:
    monitor = DartMonitor([1])
    assert monitor.receive_bus(CAPTURED["poll"] + CAPTURED["dc1_dc3"] + ack(0xC)) == []
    assert monitor.foreign_addresses == {2: 3} and monitor.counters["foreign"] == 3


def test_constructor_checks() -> None:
    for bad in ({"offline_after": 0}, {"volume_decimals": 10}):
        with pytest.raises(ValueError):
            DartMonitor([1], **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DartMonitor([33])


# ------------------------------------------------------------ mutated streams


@cache
def recorded_line() -> tuple[tuple[tuple[bool, bytes], ...], frozenset[tuple[object, ...]]]:
    """One station's line in order, as (sent by the POS, bytes) chunks, and its true sales."""
    rng = random.Random(11)
    pumps = [PumpModel.create(a, 2, rng) for a in ADDRESSES]
    responder = DartResponder(pumps)
    poller = DartPoller(ADDRESSES, clock=lambda: CLOCK)
    line: list[tuple[bool, bytes]] = []
    sims: list[SimSale] = []
    pos = Pos(pumps)
    for turn in range(500):
        now = turn * 0.02
        if turn % 30 == 3:
            pump = pumps[(turn // 30) % 2]
            nozzle = pump.nozzle(1 + (turn // 60) % 2)
            if pump.can_start(nozzle):
                pump.lift(nozzle, 500 + 7 * turn)
                pump.start_fuel(nozzle, now, 0.1)
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    sims.append(pump.hang_up(nozzle, CLOCK))
        command = pos.command(turn, poller)
        if command is not None:
            line += [(True, command), (False, responder.receive_data(command, now))]
        request = poller.next_request()
        assert request is not None
        answer = responder.receive_data(request, now)
        line += [(True, request), (False, answer)]
        events = poller.receive_data(answer) if answer else []
        if poller.awaiting_response:
            events += poller.response_timeout()
        for event in events:
            if isinstance(event, Sale):
                poller.sale_committed(event)
    truth = frozenset(
        (s.address, s.nozzle, f"{s.nozzle}:{s.totalizer_volume_end}", s.volume, s.amount, s.price)
        for s in sims
    )
    return tuple((pos, data) for pos, data in line if data), truth


def as_truth(sale: Sale) -> tuple[object, ...]:
    raw = [int(v.scaleb(2)) for v in (sale.volume, sale.amount, sale.price)]
    return (sale.address, sale.nozzle, sale.key, *raw)


MUTATION = st.tuples(
    st.sampled_from(["flip", "drop", "insert", "cut"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.integers(min_value=0, max_value=255),
)


def mutate(chunk: bytes, op: str, value: int) -> bytes:
    data = bytearray(chunk)
    if not data:
        return chunk
    i = value % len(data)
    if op == "flip":
        data[i] ^= 1 << (value % 8)
    elif op == "drop":
        del data[i : i + 1 + value % 4]
    elif op == "insert":
        data[i:i] = bytes([value]) * (1 + value % 5)
    else:  # the rest of the chunk lost
        del data[i:]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(MUTATION, max_size=120), bus=st.booleans(), split=st.integers(1, 64))
def test_mutated_streams_never_raise_nor_invent_a_sale(
    mutations: list[tuple[str, float, int]], bus: bool, split: int
) -> None:
    line, truth = recorded_line()
    chunks = list(line)
    for op, where, value in mutations:
        pos = int(where * len(chunks))
        chunks[pos] = (chunks[pos][0], mutate(chunks[pos][1], op, value))
    monitor = DartMonitor(ADDRESSES, clock=lambda: CLOCK)
    sales = []
    for from_pos, data in chunks:
        if bus:
            feed = monitor.receive_bus
        else:
            feed = monitor.receive_request if from_pos else monitor.receive_response
        for i in range(0, len(data), split):
            sales += [e for e in feed(data[i : i + split]) if isinstance(e, Sale)]
    assert {as_truth(s) for s in sales} <= truth
    if not mutations:
        assert {as_truth(s) for s in sales} == truth and len(truth) >= 8


def test_the_port_config_reaches_the_monitor() -> None:
    """collector.assembly.make_monitor: decimals and grades as for the poller,
    the station's clock; options only a poller uses are left out."""
    from datetime import timezone

    from collector.assembly import make_monitor
    from config.models_ports import PortConfig

    port = PortConfig(
        number=1, device="/dev/ttyS1", protocol="dart", mode="listen", addresses=[2],
        dart={"volume_decimals": 3, "amount_decimals": 1, "grades": {"1": "1092"}},
    )  # fmt: skip
    monitor = make_monitor(port, timezone(timedelta(hours=8)))
    stream = [CAPTURED["poll"], CAPTURED["dc2_dc3_dc1"], ack(0xA)]
    stream += [CAPTURED["poll"], CAPTURED["dc101"], ack(0xD)]
    (sale,) = [e for e in monitor.receive_bus(b"".join(stream)) if isinstance(e, Sale)]
    assert (sale.grade, sale.totalizer_volume_end, sale.totalizer_amount_end) == (
        "1092",
        Decimal("0.002"),
        Decimal("0.2"),
    )
    assert abs(sale.ended_at - datetime.now(timezone(timedelta(hours=8))).replace(tzinfo=None)) < (
        timedelta(minutes=1)
    )


def test_the_pos_simulators_commands_are_what_the_driver_may_never_send() -> None:
    """hil/pos_commands.py builds a station POS's authorise and price frames:
    the monitor counts them by name, and the collector's driver refuses them (D20)."""
    from hil.pos_commands import DartCommands
    from protocols.base import ForbiddenCommand
    from protocols.dart.framer import decode

    commands = DartCommands([1], ["authorise", "price"])
    assert commands.next_frame() is not None  # authorise: nozzle 1 before any is seen
    assert commands.next_frame() is None  # price: no price read yet
    commands.observe([NozzleStatus(1, 1, NozzleState.IDLE, price=Decimal("7.85"))])
    authorise, price = commands.next_frame(), commands.next_frame()
    assert authorise is not None and price is not None
    monitor = DartMonitor([1])
    monitor.receive_request(authorise + price)
    c = monitor.counters
    names = ("pos_cmd_allowed_nozzles", "pos_cmd_authorise", "pos_cmd_price_update")
    assert [c[name] for name in names] == [1, 1, 1]
    for wire in (authorise, price):
        frame, _ = decode(wire)
        assert isinstance(frame, Frame)
        with pytest.raises(ForbiddenCommand):
            DartPoller([1])._emit(frame)
    assert decode(price)[0] == Frame.data(0x50, 2, [(0x05, H("000785"))])
    assert commands.answered(encode_frame(Frame.ack(0x50, 2))) and commands.acked == 1


def test_one_pump_losing_power_at_any_step_on_a_bus() -> None:
    """One pump on the line goes silent at each step of the poller's
    conversation in turn: after a POLL nobody answered, the master's next
    DATA to that pump (``01 01 00``) must not be taken for the pump's."""
    unconfirmed = 0
    for phase in range(6):
        rng = random.Random(phase)
        pump = PumpModel.create(1, 2, rng)
        responder = DartResponder([pump])
        poller = DartPoller([1], clock=lambda: CLOCK)
        monitor = DartMonitor([1], clock=lambda: CLOCK)
        polled: list[Event] = []
        watched: list[Event] = []
        for turn in range(400):
            now = turn * 0.02
            if turn == 100 + phase:
                pump.silent_until = now + 1.0
            if turn % 50 == 5:
                nozzle = pump.nozzle(1 + (turn // 50) % 2)
                if pump.can_start(nozzle):
                    pump.lift(nozzle, 900 + turn)
                    pump.start_fuel(nozzle, now, 0.2)
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    pump.hang_up(nozzle, CLOCK)
            request = poller.next_request()
            assert request is not None
            watched += monitor.receive_bus(request)
            answer = responder.receive_data(request, now)
            events = []
            if answer:
                watched += monitor.receive_bus(answer)
                events = poller.receive_data(answer)
            if poller.awaiting_response:
                events += poller.response_timeout()
            for event in events:
                if isinstance(event, Sale):
                    poller.sale_committed(event)
            polled += events
        # The monitor is one frame behind (the last answer awaits its ACK).
        mine = comparable(watched)
        assert mine == comparable(polled)[: len(mine)] and len(mine) >= len(comparable(polled)) - 3
        assert sum(isinstance(e, Sale) for e in mine) == 8
        assert [(e.address, e.online) for e in watched if isinstance(e, PumpLink)] == [
            (1, True),
            (1, False),
            (1, True),
        ]
        assert monitor.counters["unknown_side"] == 0
        unconfirmed += monitor.counters["unconfirmed_answers"]
    assert unconfirmed >= 2  # the case arose, and was read right
