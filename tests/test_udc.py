"""恒山 UDC (protocols/udc): frames written from the source, the monitor's fill
cycle, describe, census, and what the collector refuses to do (SPEC D20).

Every literal cites ``fangym0335/first src/lischn019.c`` ("019:") where its
bytes are laid out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
from config.models import PortConfig
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale, Totals
from protocols.udc.census import census
from protocols.udc.describe import describe
from protocols.udc.framer import BusDecoder, Reply, Request, RequestDecoder, request_at
from protocols.udc.messages import (
    ACK_HANGUP,
    READ_DISPLAY,
    READ_STATUS,
    Display,
    NozzleTotals,
    build_display,
    build_request,
    build_totals,
    double,
    parse_display,
    parse_totals,
    single,
    totals_selector,
)
from protocols.udc.monitor import UdcMonitor

# --- frames laid out byte by byte in the source ------------------------------

#: F·A2 state of fuelling point 1 (wire pump 0, 019:152): 019:1691-1694.
STATUS_1 = bytes.fromhex("F00FA25D")
#: F·A1 display, 019:1744-1747.
DISPLAY_1 = bytes.fromhex("F00FA15E")
#: F·A9 totals of nozzle 2: selector 0x40 | (2 − 1) << 1, 019:1357-1362.
TOTALS_1_N2 = bytes.fromhex("F00FA95642BD")
#: C·A1 lifted nozzle, 019:1867-1870; reply: nozzle in the low 7 bits, 019:1896.
NOZZLE_1 = bytes.fromhex("C03FA15E")
NOZZLE_REPLY_2 = bytes.fromhex("827D")
#: C·A2 acknowledge the hang-up, 019:2093-2096; accepted with B0, 019:2122.
ACK_1 = bytes.fromhex("C03FA25D")
ACK_REPLY = bytes.fromhex("B04F")
#: Idle state 20 (019:36) and fuelling, large valve F0 (019:40).
IDLE_REPLY = bytes.fromhex("20DF")
FUELLING_REPLY = bytes.fromhex("F00F")
#: The display reply, 019:1277-1294: price [0] low, [2] high = 7.85; amount
#: [4],[6],[8] low → high = 0157.86; volume [10],[12],[14] = 0020.11; state
#: [16] = 20 idle; each byte followed by its complement (019:2380-2397).
SALE_DISPLAY = bytes.fromhex("857A07F88679 57A8 01FE 11EE 20DF 00FF 20DF".replace(" ", ""))
#: The totals reply, 019:1388-1398: volume total [0],[2]…[8] least significant
#: first = 0123456789 (1234567.89 L); amount total [10]…[18] = 0987654321.
TOTALS_REPLY = bytes.fromhex(
    "8976 6798 45BA 23DC 01FE21DE 43BC 659A 8778 09F600FF".replace(" ", "")
)
#: F·A5 authorise pump 3 (wire 2) at 7.85, no preset: 019:1483-1505.
AUTHORISE_3 = bytes.fromhex("F20DA55A05FA857A07F800FF00FF00FF00FF00FF00FF")

T0 = datetime(2026, 11, 22, 8, 0, 0)


def test_source_frames_build_and_parse() -> None:
    assert build_request(READ_STATUS, 0) == STATUS_1
    assert build_request(READ_DISPLAY, 0) == DISPLAY_1
    assert build_request((0xF0, 0xA9), 0, bytes((totals_selector(2),))) == TOTALS_1_N2
    assert build_request(ACK_HANGUP, 0) == ACK_1
    display = parse_display(single(SALE_DISPLAY) or b"")
    assert display == Display(price=785, amount=15786, volume=2011, state=0x20)
    totals = parse_totals(single(TOTALS_REPLY) or b"")
    assert totals == NozzleTotals(volume=123456789, amount=987654321)
    assert totals.digits == "0123456789"
    request, n = request_at(AUTHORISE_3, 0)
    assert n == 22 and request == Request(0xF0, 2, 0xA5, single(AUTHORISE_3[4:]) or b"")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=150)
        return self.now


def exchange(*pairs: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return list(pairs)


#: One fill on nozzle 2 of fuelling point 1 as the FCC runs it: lift, read
#: the nozzle, fuel, hang up, then totals, display, acknowledgement, display
#: again (019:544-575, 1216-1342).
FILL = exchange(
    (STATUS_1, IDLE_REPLY),
    (STATUS_1, bytes.fromhex("A05F")),  # lifted (cash), 019:37
    (NOZZLE_1, NOZZLE_REPLY_2),
    (STATUS_1, FUELLING_REPLY),
    (STATUS_1, IDLE_REPLY),
    (TOTALS_1_N2, TOTALS_REPLY),
    (DISPLAY_1, SALE_DISPLAY),
    (ACK_1, ACK_REPLY),
    (DISPLAY_1, SALE_DISPLAY),  # read again after the acknowledgement (019:563)
    (STATUS_1, IDLE_REPLY),
)


def run(monitor: UdcMonitor, steps: list[tuple[bytes, bytes]], bus: bool) -> list[Event]:
    events: list[Event] = []
    for request, reply in steps:
        if bus:
            events += monitor.receive_bus(request + reply)
        else:
            events += monitor.receive_request(request)
            events += monitor.receive_response(reply)
    return events


@pytest.mark.parametrize("bus", [False, True], ids=["relay", "listen"])
def test_a_fill_from_source_frames_is_one_sale_keyed_by_its_totals(bus: bool) -> None:
    monitor = UdcMonitor([1], grades={"2": "1095"}, clock=Clock())
    events = run(monitor, [*FILL, (STATUS_1, b"")], bus)  # the tap: the next request ends a reply
    sales = [e for e in events if isinstance(e, Sale)]
    assert sales == [
        Sale(
            address=1,
            nozzle=2,
            order_no="0123456789",
            ended_at=T0 + timedelta(milliseconds=150),
            grade="1095",
            price=Decimal("7.85"),
            volume=Decimal("20.11"),
            amount=Decimal("157.86"),
            totalizer_volume_end=Decimal("1234567.89"),
            totalizer_amount_end=Decimal("9876543.21"),
            key="2:0123456789",
            raw=single(SALE_DISPLAY) or b"",
        )
    ]
    assert [e for e in events if isinstance(e, Totals)] == [
        Totals(1, 2, Decimal("1234567.89"), Decimal("9876543.21"))
    ]
    states = [e.state for e in events if isinstance(e, NozzleStatus)]
    assert states == [NozzleState.LIFTED, NozzleState.FUELLING, NozzleState.IDLE]
    assert events[0] == PumpLink(1, online=True)
    assert not [e for e in events if isinstance(e, ProtocolError)]
    counters = monitor.counters
    assert (counters["acks"], counters["controls"], counters["sales"]) == (1, 1, 1)


def test_without_totals_the_key_is_the_end_time_volume_and_amount() -> None:
    """A TQC controller reads no totals after a sale (020:14)."""
    steps = [s for s in FILL if s[0] != TOTALS_1_N2]
    [sale] = [e for e in run(UdcMonitor([1], clock=Clock()), steps, False) if isinstance(e, Sale)]
    assert (sale.order_no, sale.totalizer_volume_end, sale.totalizer_amount_end) == ("", None, None)
    assert sale.key == "2:20261122080000:2011:15786"


def test_totals_that_did_not_move_are_stale_and_not_used() -> None:
    """Totals lagging the hang-up (020:1290) equal those before the fill."""
    before = [(TOTALS_1_N2, TOTALS_REPLY)]
    monitor = UdcMonitor([1], clock=Clock())
    [sale] = [e for e in run(monitor, before + FILL, False) if isinstance(e, Sale)]
    assert sale.totalizer_volume_end is None and sale.order_no == ""
    assert monitor.counters["stale_totals"] == 1


def test_a_zero_display_with_moved_totals_is_reported() -> None:
    """The known defect: a hang-up in state D0 may show no sale while the
    totals moved (019:13)."""
    moved = build_totals(NozzleTotals(123456789 + 2011, 987654321 + 15786))
    zero = double(build_display(Display(785, 0, 0, 0x20)))
    steps = [(TOTALS_1_N2, TOTALS_REPLY)] + [
        (rq, double(moved) if rq == TOTALS_1_N2 else zero if rp == SALE_DISPLAY else rp)
        for rq, rp in FILL
    ]
    monitor = UdcMonitor([1], clock=Clock())
    events = run(monitor, steps, False)
    assert not [e for e in events if isinstance(e, Sale)]
    [error] = [e for e in events if isinstance(e, ProtocolError)]
    assert (error.kind, error.address) == ("zero_sale", 1)


def test_without_the_acknowledgement_the_next_lift_closes_the_fill() -> None:
    steps = [s for s in FILL if s[0] != ACK_1] + [(STATUS_1, bytes.fromhex("A05F"))]
    events = run(UdcMonitor([1], clock=Clock()), steps, False)
    assert [e.key for e in events if isinstance(e, Sale)] == ["2:0123456789"]


def test_start_up_acknowledgement_and_idle_displays_are_no_sale() -> None:
    """The FCC acknowledges and reads the display at start (019:2053-2066)."""
    steps = [(ACK_1, ACK_REPLY), (DISPLAY_1, SALE_DISPLAY), (STATUS_1, IDLE_REPLY)]
    assert not [e for e in run(UdcMonitor([1]), steps * 3, True) if isinstance(e, Sale)]


def test_a_silent_pump_goes_offline_and_foreign_pumps_are_counted() -> None:
    monitor = UdcMonitor([1], offline_after=2)
    events = monitor.receive_bus(STATUS_1 + IDLE_REPLY + STATUS_1 + STATUS_1 + STATUS_1)
    assert [e for e in events if isinstance(e, PumpLink)] == [
        PumpLink(1, online=True),
        PumpLink(1, online=False),
    ]
    monitor.receive_bus(build_request(READ_STATUS, 4) + IDLE_REPLY + STATUS_1)
    assert monitor.foreign_addresses == {5: 1}


def test_a_state_byte_that_looks_like_a_header_is_still_a_reply() -> None:
    """F0 is "fuelling, large valve" and pump 0's header (module doc)."""
    decoder = BusDecoder()
    items = decoder.receive_data(STATUS_1 + FUELLING_REPLY + STATUS_1 + STATUS_1 + IDLE_REPLY)
    items += decoder.receive_data(build_request(READ_STATUS, 1))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Request", "Reply", "Request", "Request", "Reply", "Request"]
    assert isinstance(items[1], Reply) and items[1].data == b"\xf0"


# --- describe and census -----------------------------------------------------


def test_describe_a_capture_in_line_order() -> None:
    capture = STATUS_1 + IDLE_REPLY + DISPLAY_1 + SALE_DISPLAY + ACK_1 + ACK_REPLY + AUTHORISE_3
    lines = describe(capture + b"\x12")
    assert [(d["offset"], d.get("direction"), d.get("message")) for d in lines] == [
        (0, "request", "read_status"),
        (4, "reply", "read_status"),
        (6, "request", "read_display"),
        (10, "reply", "read_display"),
        (28, "request", "ack_hangup"),
        (32, "reply", "ack_hangup"),
        (34, "request", "authorise"),
        (56, None, None),
    ]
    assert lines[3]["values"] == {
        "price": "7.85",
        "amount": "157.86",
        "volume": "20.11",
        "state": "idle",
    }
    assert (lines[4]["read_only"], lines[6]["read_only"]) == (False, False)
    assert lines[6]["fields"] == {"slow_flow": 5, "price": 785, "amount": 0, "volume": 0}
    assert (lines[7]["ok"], lines[7]["error"]) == (False, "truncated")
    bad = describe(DISPLAY_1 + SALE_DISPLAY[:-1] + b"\x00" + STATUS_1)
    assert [d.get("error") for d in bad] == [None, "bad_pair", None]


def test_census_counts_requests_as_the_masters_and_replies_as_the_pumps() -> None:
    capture = b"\x00\x13" + b"".join(rq + rp for rq, rp in FILL) + STATUS_1[:3]
    found = census(capture)
    assert (found.good_frames, found.master_frames, found.pump_frames) == (20, 10, 10)
    assert (found.bad_frames, found.addresses) == (1, frozenset({1}))


# --- round trips and arbitrary input -------------------------------------------

digits = st.integers(min_value=0)


@settings(max_examples=60)
@given(
    st.integers(0, 9999),
    st.integers(0, 999_999),
    st.integers(0, 999_999),
    st.integers(0, 255),
    st.integers(0, 10**10 - 1),
    st.integers(0, 10**10 - 1),
)
def test_layouts_round_trip(
    price: int, amount: int, volume: int, state: int, vt: int, at: int
) -> None:
    display = Display(price, amount, volume, state)
    assert parse_display(single(double(build_display(display))) or b"") == display
    totals = NozzleTotals(vt, at)
    assert parse_totals(build_totals(totals)) == totals


@settings(max_examples=60)
@given(st.sampled_from([READ_STATUS, READ_DISPLAY, ACK_HANGUP]), st.integers(0, 15))
def test_requests_round_trip(command: tuple[int, int], pump: int) -> None:
    [request] = RequestDecoder().receive_data(build_request(command, pump))
    assert isinstance(request, Request)
    assert (request.command, request.pump) == (command, pump)


@settings(max_examples=150)
@given(st.binary(max_size=300), st.integers(1, 40))
def test_arbitrary_bytes_never_raise_and_return_only_events(data: bytes, split: int) -> None:
    """D20: a monitor has nothing to send — whatever arrives, only events come back."""
    monitor = UdcMonitor([1, 2, 3])
    for i in range(0, len(data), split):
        part = data[i : i + split]
        for out in (
            monitor.receive_request(part),
            monitor.receive_response(part),
            monitor.receive_bus(part),
        ):
            assert isinstance(out, list)
            assert all(not isinstance(e, bytes | bytearray) for e in out)
    describe(data)
    census(data)


# --- what the collector never does (SPEC D20) ----------------------------------


def test_udc_cannot_be_polled_and_config_check_says_why() -> None:
    found = protocols.descriptor("udc")
    assert found.driver is None and "C·A2" in (found.poll_refused or "")
    assert "udc" in protocols.bus_monitors()
    with pytest.raises(protocols.UnknownProtocol, match="cannot be polled"):
        protocols.load_driver("udc")
    table = {"number": 1, "device": "/dev/ttyS0", "addresses": [1], "protocol": "udc"}
    with pytest.raises(ValueError, match=r"cannot be polled: the controller must acknowledge"):
        PortConfig.model_validate(table)
    listen = PortConfig.model_validate({**table, "mode": "listen"})
    assert (listen.baudrate, listen.parity) == (9600, "N")
    with pytest.raises(ValueError, match=r"addresses are 1\.\.16"):
        PortConfig.model_validate({**table, "mode": "listen", "addresses": [17]})
