"""CK1313 framing: frames written from the FCC source, the check, every recovery case.

Source frames are built byte by byte as ``fangym0335/first src/lischn006.c``
builds or checks them (cited per test); the check is ``Check_xor_bdr``
(``fangym0335/first src/lrc.c:91-101``): XOR of every byte before it, & 0x7F.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ck1313.framer import (
    COMMAND_CODES,
    MAX_FRAME_LEN,
    Frame,
    FrameDecoder,
    checksum,
    decode,
    encode_frame,
    pump_of,
    unit_of,
)
from protocols.ck1313.messages import REPLY_LEN
from protocols.events import ProtocolError


def xor7(data: bytes) -> int:
    """Check_xor_bdr, written out as in fangym0335/first src/lrc.c:91-101."""
    x = 0
    for byte in data:
        x = byte ^ x
    return x & 0x7F


# The status query to pump 1 (phyfp 1: 0x90 + 16 = 0xA0, lischn006.c:116-117),
# as GetPumpStatus builds it (lischn006.c:1525-1530): F5, 0x02 | A0, D5, check.
STATUS_QUERY_PUMP1 = bytes([0xF5, 0x02 | 0xA0, 0xD5]) + bytes([xor7(b"\xf5\xa2\xd5")])
# The totals query to pump 2 (phyfp 2: B0), GetPumpTotal (lischn006.c:1046-1049).
TOTALS_QUERY_PUMP2 = bytes([0xF5, 0x02 | 0xB0, 0xC5, xor7(b"\xf5\xb2\xc5")])
# The set-price request the FCC sends (lischn006.c:633-640) — never by us.
SET_PRICE_PUMP1 = bytes([0xF5, 0x04 | 0xA0, 0x07, 0x85, 0xB2, xor7(b"\xf5\xa4\x07\x85\xb2")])


def test_check_is_xor_of_all_bytes_before_it_bit_7_cleared() -> None:
    assert bytes.fromhex("F5 A2 D5 02") == STATUS_QUERY_PUMP1
    assert checksum(b"\xf5\xa2\xd5") == 0x02
    assert checksum(b"\xff") == 0x7F  # bit 7 never set (lrc.c:101)
    for data in (b"", b"\xf5", b"\xf5\xbc" + bytes(range(10)) + b"\xc5"):
        assert checksum(data) == xor7(data)


def test_our_request_builder_writes_the_fccs_bytes() -> None:
    assert encode_frame(1, b"", 0xD5) == STATUS_QUERY_PUMP1
    assert encode_frame(2, b"", 0xC5) == TOTALS_QUERY_PUMP2
    assert encode_frame(1, b"\x07\x85", 0xB2) == SET_PRICE_PUMP1  # k = 4 (lischn006.c:634)


def test_addresses_are_a_nibble_nine_plus_the_pump() -> None:
    assert (unit_of(1), unit_of(2), unit_of(6)) == (0xA, 0xB, 0xF)
    assert (pump_of(0xA), pump_of(0xB), pump_of(0x9), pump_of(0x2)) == (1, 2, None, None)


def test_source_requests_decode_self_delimiting() -> None:
    for wire, unit, command in (
        (STATUS_QUERY_PUMP1, 0xA, 0xD5),
        (TOTALS_QUERY_PUMP2, 0xB, 0xC5),
        (SET_PRICE_PUMP1, 0xA, 0xB2),
    ):
        frame, used = decode(wire)
        assert isinstance(frame, Frame) and used == len(wire)
        assert (frame.unit, frame.command, frame.raw) == (unit, command, wire)
    frame, _ = decode(SET_PRICE_PUMP1)
    assert isinstance(frame, Frame) and frame.payload == b"\x07\x85" and frame.count == 4


# Replies as the FCC checks them. The low nibble of byte 1 is never checked
# (lischn006.c:1551), so these carry an arbitrary one (7): the decoder must not care.
def reply(unit: int, payload: bytes, command: int, k: int = 7) -> bytes:
    head = bytes([0xF5, unit << 4 | k, *payload, command])
    return head + bytes([xor7(head)])


# Totals reply of pump 1, 14 bytes, C5 at [12] (lischn006.c:1051, :1069-1078):
# volume total 00123456.78 at [2..6], amount total 00987654.32 at [7..11]
# (lischn006.c:1124-1130).
TOTALS_REPLY = reply(0xA, bytes.fromhex("00123456780098765432"), 0xC5)
# Sale reply of pump 1, 10 bytes, D9 at [8] (lischn006.c:1336, :1354): volume
# 0025.00 at [2..4], amount 0196.25 at [5..7] (lischn006.c:1180-1188).
SALE_REPLY = reply(0xA, bytes.fromhex("002500019625"), 0xD9)
# Price reply, 6 bytes, B6 at [4], price 07.85 at [2..3] (lischn006.c:1774, :1793, :1169-1171).
PRICE_REPLY = reply(0xA, bytes.fromhex("0785"), 0xB6)
# Status reply, 5 bytes, status at [2] (lischn006.c:1532, :1562); [3] is not
# checked by the FCC: D5 here (inferred), something else in STATUS_REPLY_ODD.
STATUS_REPLY = reply(0xA, b"\x20", 0xD5)
STATUS_REPLY_ODD = bytes([0xF5, 0xA3, 0x20, 0x00]) + bytes([xor7(b"\xf5\xa3\x20\x00")])


def test_source_replies_decode_self_delimiting_and_with_the_length_expected() -> None:
    for wire, command in ((TOTALS_REPLY, 0xC5), (SALE_REPLY, 0xD9), (PRICE_REPLY, 0xB6)):
        assert len(wire) == REPLY_LEN[command]
        for expect in (None, REPLY_LEN[command]):
            frame, used = decode(wire, expect)
            assert isinstance(frame, Frame) and used == len(wire)
            assert frame.command == command and frame.payload == wire[2:-2]
    frame, _ = decode(STATUS_REPLY)
    assert isinstance(frame, Frame) and frame.payload == b"\x20" and frame.command == 0xD5


def test_a_status_reply_without_d5_needs_the_expected_length() -> None:
    """A pump that does not put D5 at [3] is read exactly as the FCC reads it."""
    frame, used = decode(STATUS_REPLY_ODD, expect=5)
    assert isinstance(frame, Frame) and used == 5 and frame.payload == b"\x20"
    decoder = FrameDecoder()
    items = decoder.receive_data(STATUS_REPLY_ODD + STATUS_REPLY_ODD)
    assert not any(isinstance(i, Frame) for i in items)  # self-delimiting: no end found


def test_expect_mode_skips_our_own_request_heard_back() -> None:
    decoder = FrameDecoder()
    decoder.expect = 5
    items = decoder.receive_data(STATUS_QUERY_PUMP1 + STATUS_REPLY_ODD)
    assert [i.raw for i in items if isinstance(i, Frame)] == [STATUS_QUERY_PUMP1, STATUS_REPLY_ODD]
    assert decoder.expect is None  # the awaited reply came


def kinds(items: list[Frame | ProtocolError]) -> list[str]:
    return [i.kind if isinstance(i, ProtocolError) else "frame" for i in items]


def test_garbage_before_between_and_after_frames() -> None:
    decoder = FrameDecoder()
    items = decoder.receive_data(b"\x00\x13" + SALE_REPLY + b"\x42" + PRICE_REPLY + b"\x99\x01")
    assert kinds(items) == ["garbage", "frame", "garbage", "frame", "garbage"]
    assert decoder.counters["garbage_bytes"] == 5 and decoder.counters["frames"] == 2


def test_bad_check_is_reported_and_the_next_frame_found() -> None:
    spoilt = SALE_REPLY[:-1] + bytes([SALE_REPLY[-1] ^ 0x01])
    decoder = FrameDecoder()
    assert kinds(decoder.receive_data(spoilt + PRICE_REPLY)) == ["bad_lrc", "frame"]
    decoder.expect = 10
    assert kinds(decoder.receive_data(spoilt + PRICE_REPLY)) == ["bad_lrc", "frame"]


def test_bit_7_of_a_payload_byte_is_what_the_check_cannot_see() -> None:
    """The documented blind spot (driver: read twice; monitor: checks)."""
    flipped = SALE_REPLY[:3] + bytes([SALE_REPLY[3] ^ 0x80]) + SALE_REPLY[4:]
    frame, _ = decode(flipped)
    assert isinstance(frame, Frame) and frame.payload != SALE_REPLY[2:-2]


def test_a_frame_cut_by_a_new_start_is_truncated() -> None:
    decoder = FrameDecoder()
    items = decoder.receive_data(TOTALS_REPLY[:9] + SALE_REPLY)
    assert kinds(items) == ["truncated", "frame"]
    decoder.expect = 14
    assert kinds(decoder.receive_data(TOTALS_REPLY[:9] + SALE_REPLY)) == ["truncated", "frame"]


def test_no_end_within_the_longest_frame_is_bad_message() -> None:
    corrupted = TOTALS_REPLY[:12] + b"\x12" + TOTALS_REPLY[13:] + b"\x00" * 4
    decoder = FrameDecoder()
    assert kinds(decoder.receive_data(corrupted))[0] == "bad_message"


def test_an_incomplete_frame_waits_then_flush_reports_it() -> None:
    decoder = FrameDecoder()
    assert decoder.receive_data(TOTALS_REPLY[:8]) == []
    assert decoder.buffered == 8
    assert kinds(decoder.flush()) == ["truncated"] and decoder.buffered == 0
    assert decoder.flush() == []


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6),
    st.binary(max_size=10).map(lambda b: bytes(x % 0xA0 for x in b)),
    st.sampled_from(sorted(COMMAND_CODES)),
    st.integers(1, 6),
)
def test_build_parse_round_trip_split_anywhere(
    address: int, payload: bytes, command: int, cut: int
) -> None:
    wire = encode_frame(address, payload, command)
    assert len(wire) <= MAX_FRAME_LEN
    decoder = FrameDecoder()
    items = decoder.receive_data(wire[:cut]) + decoder.receive_data(wire[cut:])
    assert items == [Frame(unit_of(address), len(payload) + 2, payload, command, wire)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(1, 7))
def test_any_bytes_never_raise_and_frames_have_good_checks(data: bytes, step: int) -> None:
    decoder = FrameDecoder()
    items = []
    for i in range(0, len(data), step):
        items += decoder.receive_data(data[i : i + step])
    items += decoder.flush()
    for item in items:
        if isinstance(item, Frame):
            assert item.raw[0] == 0xF5 and item.raw[-1] == checksum(item.raw[:-1])
    assert decoder.buffered == 0
