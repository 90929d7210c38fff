"""正星 Censtar (protocols/censtar): frames written from the source, the
monitor's sales and totals, describe, census, and what the collector
refuses to do (SPEC D20).

Every literal cites ``fangym0335/first src/lischn005.c`` ("005:") where its
bytes are laid out; X is the XOR of the bytes from CMD on (005:1744, 1764).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
from config.models import PortConfig
from protocols.censtar.census import census
from protocols.censtar.describe import describe
from protocols.censtar.framer import FrameDecoder
from protocols.censtar.messages import Frame, Record, encode, parse_record, record_data, totals_data
from protocols.censtar.messages import Totals as Sums
from protocols.censtar.monitor import CenstarMonitor
from protocols.events import (
    Confirmation,
    Event,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)

T0 = datetime(2026, 11, 22, 8, 0)


def frame(text: str) -> bytes:
    data = bytes.fromhex(text)
    assert reduce(lambda a, b: a ^ b, data[1:-1], 0) == data[-1], "X is the XOR from CMD on"
    return data


#: 0D state of fuelling point 1: 005:1741-1746; reply state [3] = 13: idle
#: (low nibble 3, 005:32) with an uncleared sale (bit 0x10, 005:585).
STATUS = frame("FC 0D 01 0C")
IDLE_UNCLEARED = frame("FC 0D 01 13 1F")
IDLE_CLEAR = frame("FC 0D 01 03 0F")
FUELLING = frame("FC 0D 01 88 84")  # low nibble 8 fuelling (005:36), 0x80 nozzle out
#: 0C totals: 005:1211-1216; reply amount [4..7] = 0x04C649AE (801038.54),
#: volume [8..11] = 0x05F6591D (1000307.49), binary, most significant first
#: (005:1106-1110, bcd.c Hex2Double).
TOTALS = frame("FC 0C 01 0D")
TOTALS_REPLY = frame("FC 0C 01 13 04 C6 49 AE 05 F6 59 1D 00 00 00 00 8C")
#: The totals before the fill: 20.11 L and 157.86 yuan less.
TOTALS_BEFORE = frame("FC 0C 01 03 04 C6 0C 04 05 F6 51 42 00 00 00 00 24")
#: 15 the oldest uncleared sale: 005:1268-1273; reply (36 bytes): amount
#: 15786 = 0x03DAA in [6], [7] and [8]'s high nibble; volume 2011 = 0x007DB
#: in [8]'s low nibble, [9], [10] (005:1134-1146); price 07 85 BCD at
#: [19..20] (005:1152-1153); sequence number 12 34 at [23..24] (005:1325-1326).
SALE = frame("FC 15 01 14")
SALE_REPLY = frame(
    "FC 15 01 13 00 00 03 DA A0 07 DB 00 00 00 00 00 00 00 00 07 85 00 00 12 34"
    " 00 00 00 00 00 00 00 00 00 00 06"
)
#: 17 remove sale 12 34 from the buffer: 005:1322-1327; reply state [3]
#: without bit 0x10: cleared (005:1362).
CLEAR = frame("FC 17 01 12 34 30")
CLEAR_REPLY = frame("FC 17 01 03 15")
#: 18 running fill: 005:1598-1603; volume [4..6] 00 20 11, amount [7..9]
#: 01 57 86, BCD (005:1634-1637).
RUNNING = frame("FC 18 01 19")
RUNNING_REPLY = frame("FC 18 01 88 00 20 11 01 57 86 00 00 70")
#: 08 AA open mode: 005:1960-1964, 169.
MODE = frame("FC 08 01 AA A3")


def test_source_frames_decode() -> None:
    decoder = FrameDecoder("reply")
    [record_frame] = decoder.receive_data(SALE_REPLY)
    assert isinstance(record_frame, Frame)
    assert parse_record(record_frame) == Record(15786, 2011, 785, b"\x12\x34")
    assert encode(0x0D, 1) == STATUS and encode(0x17, 1, b"\x12\x34") == CLEAR


#: A fill as the FCC runs it: lift (authorised by the controller), fuel, then
#: the totals, the record and its removal (005:570-589, 1071-1125, 1255-1362).
FILL = [
    (STATUS, IDLE_CLEAR),
    (TOTALS, TOTALS_BEFORE),
    (STATUS, IDLE_CLEAR),  # idle, nothing uncleared, no fill since: the base totals
    (STATUS, FUELLING),
    (RUNNING, RUNNING_REPLY),
    (STATUS, IDLE_UNCLEARED),
    (TOTALS, TOTALS_REPLY),
    (SALE, SALE_REPLY),
    (CLEAR, CLEAR_REPLY),
    (STATUS, IDLE_CLEAR),
]


def run(monitor: CenstarMonitor, steps: list[tuple[bytes, bytes]], bus: bool) -> list[Event]:
    events: list[Event] = []
    for request, reply in steps:
        if bus:
            events += monitor.receive_bus(request + reply)
        else:
            events += monitor.receive_request(request)
            events += monitor.receive_response(reply)
    return events


@pytest.mark.parametrize("bus", [False, True], ids=["relay", "listen"])
def test_a_fill_from_source_frames_is_one_sale_with_its_totals(bus: bool) -> None:
    monitor = CenstarMonitor([1], grades={"1": "1092"}, clock=lambda: T0)
    events = run(monitor, FILL, bus)
    assert [e for e in events if isinstance(e, Sale)] == [
        Sale(
            address=1,
            nozzle=1,
            order_no="1234",
            ended_at=T0,
            grade="1092",
            price=Decimal("7.85"),
            volume=Decimal("20.11"),
            amount=Decimal("157.86"),
            totalizer_volume_end=Decimal("1000307.49"),
            totalizer_amount_end=Decimal("801038.54"),
            key="1234:2011:15786",
            raw=SALE_REPLY[3:-1],
            booking=0x1234,  # the record's sequence number, which the 17 names
        )
    ]
    # The controller's 17 removing it: its booking of that sale (collector/station/reconcile.py).
    assert [e for e in events if isinstance(e, Confirmation)] == [Confirmation(1, 0x1234)]
    assert [e for e in events if isinstance(e, Totals)][-1] == Totals(
        1, 1, Decimal("1000307.49"), Decimal("801038.54")
    )
    statuses = [(e.state, e.volume) for e in events if isinstance(e, NozzleStatus)]
    assert statuses == [
        (NozzleState.IDLE, None),
        (NozzleState.FUELLING, None),
        (NozzleState.FUELLING, Decimal("20.11")),
        (NozzleState.IDLE, None),
    ]
    assert events[0] == PumpLink(1, online=True)
    assert not [e for e in events if isinstance(e, ProtocolError)]
    assert (monitor.counters["acks"], monitor.counters["controls"]) == (1, 1)


def test_a_record_read_again_is_one_sale_even_with_a_spoilt_sequence_number() -> None:
    spoilt = bytearray(SALE_REPLY)
    spoilt[23] ^= 0x01
    spoilt[3] ^= 0x01  # a second flip of the same bit: the XOR still passes
    steps = [*FILL[:8], (SALE, bytes(spoilt)), (SALE, SALE_REPLY), *FILL[8:]]
    monitor = CenstarMonitor([1], clock=lambda: T0)
    sales = [e for e in run(monitor, steps, False) if isinstance(e, Sale)]
    assert [s.key for s in sales] == ["1234:2011:15786"]
    assert monitor.counters["rereads"] == 2


def test_totals_go_only_to_the_sale_they_prove() -> None:
    """Two sales queued (the controller away): the totals read now are the
    newest sale's, not the oldest's (module doc)."""
    older = encode(0x15, 1, record_data(Record(7850, 1000, 785, b"\x12\x33"), 0x13))
    base = Totals(1, 1, Decimal(100030749 - 2011 - 1000), Decimal(80103854 - 15786 - 7850))
    base_frame = encode(0x0C, 1, totals_data(Sums(int(base.amount), int(base.volume)), 0x03))
    steps = [(STATUS, IDLE_CLEAR), (TOTALS, base_frame), (STATUS, IDLE_CLEAR)]
    steps += [(STATUS, IDLE_UNCLEARED), (TOTALS, TOTALS_REPLY), (SALE, older), (SALE, SALE_REPLY)]
    monitor = CenstarMonitor([1])
    sales = [e for e in run(monitor, steps, False) if isinstance(e, Sale)]
    assert [(s.volume, s.totalizer_volume_end) for s in sales] == [
        (Decimal("10.00"), None),
        (Decimal("20.11"), Decimal("1000307.49")),
    ]
    assert monitor.counters["totals_unmatched"] == 1


def test_no_sale_reply_and_foreign_pumps() -> None:
    monitor = CenstarMonitor([1], offline_after=2)
    none = frame("FC 16 01 03 14")  # 16: no sale (005:1303); length unverified
    events = monitor.receive_bus(SALE + none + STATUS * 4)  # the last waits for its reply
    assert [e for e in events if isinstance(e, PumpLink)] == [
        PumpLink(1, online=True),
        PumpLink(1, online=False),
    ]
    assert not [e for e in events if isinstance(e, Sale | ProtocolError)]
    monitor.receive_bus(encode(0x0D, 7) + encode(0x0D, 7, b"\x03"))
    assert monitor.foreign_addresses == {7: 2}


# --- describe and census -----------------------------------------------------


def test_describe_a_capture_in_line_order() -> None:
    capture = STATUS + IDLE_UNCLEARED + SALE + SALE_REPLY + CLEAR + CLEAR_REPLY + MODE
    lines = describe(capture + b"\x00\xfc\x0d")
    assert [(d["offset"], d.get("direction"), d.get("message")) for d in lines] == [
        (0, "request", "status"),
        (4, "reply", "status"),
        (9, "request", "sale"),
        (13, "reply", "sale"),
        (49, "request", "clear"),
        (55, "reply", "clear"),
        (60, "request", "mode"),
        (65, None, None),
        (66, None, None),
    ]
    assert lines[1]["values"] == {"state": "idle", "uncleared_sale": True, "nozzle_out": False}
    assert lines[3]["values"] == {
        "amount": "157.86",
        "volume": "20.11",
        "price": "7.85",
        "order_no": "1234",
    }
    assert (lines[4]["read_only"], lines[6]["read_only"]) == (False, False)
    assert [lines[7]["error"], lines[8]["error"]] == ["garbage", "truncated"]
    bad = describe(SALE_REPLY[:-1] + b"\x00" + STATUS)
    assert [d.get("error") for d in bad] == ["bad_xor", None]


def test_census_counts_both_sides_and_names_the_pump() -> None:
    capture = b"\x13" + b"".join(rq + rp for rq, rp in FILL) + STATUS[:2]
    found = census(capture)
    assert (found.good_frames, found.master_frames, found.pump_frames) == (20, 10, 10)
    assert (found.bad_frames, found.addresses) == (1, frozenset({1}))


# --- round trips and arbitrary input -------------------------------------------


@settings(max_examples=60)
@given(
    st.integers(0, (1 << 20) - 1),
    st.integers(0, (1 << 20) - 1),
    st.integers(0, 9999),
    st.binary(min_size=2, max_size=2),
)
def test_records_round_trip(amount: int, volume: int, price: int, seq: bytes) -> None:
    record = Record(amount, volume, price, seq)
    [decoded] = FrameDecoder("reply").receive_data(encode(0x15, 1, record_data(record, 3)))
    assert isinstance(decoded, Frame) and parse_record(decoded) == record


@settings(max_examples=150)
@given(st.binary(max_size=300), st.integers(1, 40))
def test_arbitrary_bytes_never_raise_and_return_only_events(data: bytes, split: int) -> None:
    """D20: a monitor has nothing to send — whatever arrives, only events come back."""
    monitor = CenstarMonitor([1, 2, 3])
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


def test_censtar_cannot_be_polled_and_config_check_says_why() -> None:
    found = protocols.descriptor("censtar")
    assert found.driver is None and "17" in (found.poll_refused or "")
    assert "censtar" in protocols.bus_monitors()
    with pytest.raises(protocols.UnknownProtocol, match="cannot be polled"):
        protocols.load_driver("censtar")
    table = {"number": 1, "device": "/dev/ttyS0", "addresses": [1], "protocol": "censtar"}
    with pytest.raises(ValueError, match=r"cannot be polled: the pump keeps each sale"):
        PortConfig.model_validate(table)
    relay = PortConfig.model_validate({**table, "mode": "relay", "pos_device": "/dev/ttyS1"})
    assert (relay.baudrate, relay.parity) == (9600, "E")
