"""Lanfeng framing: frames written from the FCC source, the check, every recovery case.

Requests are built byte by byte as ``fangym0335/first src/lischn017.c``
builds them (cited per frame); the check is ``LF_not`` (``:1626-1637``):
the two's complement of the byte sum of ``[1..10]``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import ProtocolError
from protocols.lanfeng.framer import FRAME_LEN, Frame, FrameDecoder, check_of, decode, encode_frame
from protocols.lanfeng.messages import build_request, request_command


def lf_not(body: bytes) -> int:
    """LF_not as written in lischn017.c:1626-1637: sum, then NOT, then + 1."""
    ret = 0
    for byte in reversed(body):
        ret = (ret + byte) & 0xFF
    return (~ret + 1) & 0xFF


def query(address: int, command: int) -> bytes:
    """addr, 00, command, eight 00, LF_not([1..10]) (lischn017.c:1391-1403)."""
    body = bytes([0x00, command]) + bytes(8)
    return bytes([0x00 | address]) + body + bytes([lf_not(body)])


B8_PUMP1 = query(1, 0xB8)  # GetPumpStatus, lischn017.c:1391-1403
AD_PUMP1 = query(1, 0xAD)  # GetPumpTotal, lischn017.c:1082-1093
AC_PUMP2 = query(2, 0xAC)  # GetPumpAmount, lischn017.c:1030-1041
A0_PUMP1 = query(1, 0xA0)  # SetCtrlMode, lischn017.c:1650-1661 — never sent by us
# The set-price request (lischn017.c:785-796): price 07.85 at [3..4] — never sent by us.
SET_PRICE_BODY = bytes([0x00, 0xA4, 0x07, 0x85]) + bytes(6)
SET_PRICE_PUMP1 = bytes([0x01]) + SET_PRICE_BODY + bytes([lf_not(SET_PRICE_BODY)])


def reply(head: int, body: bytes) -> bytes:
    """A reply: the check as the FCC verifies it (lischn017.c:1423)."""
    assert len(body) == 10
    return bytes([head]) + body + bytes([lf_not(body)])


# The B8 reply of pump 1 as the FCC reads it (lischn017.c:955-972, :1428): price
# 07.85 at [2..3], amount 0196.25 at [4..6], volume 0025.00 at [7..9], state 41
# (idle, host control, :23-26) at [10]; [1] is not read by the FCC.
STATUS_REPLY = reply(0x01, bytes.fromhex("00078501962500250041"))
# The AD reply: volume totals at [5..10] (lischn017.c:923): 0012345678.90;
# [1..4] are not read by the FCC (these bytes say nothing).
VOLUME_TOTAL_REPLY = reply(0x01, bytes.fromhex("00123456001234567890"))


def test_check_is_the_twos_complement_of_the_sum_of_bytes_1_to_10() -> None:
    assert B8_PUMP1.hex(" ").upper() == "01 00 B8 00 00 00 00 00 00 00 00 48"
    for body in (B8_PUMP1[1:11], SET_PRICE_BODY, STATUS_REPLY[1:11], bytes(range(200, 210))):
        assert check_of(body) == lf_not(body)
        assert sum(body + bytes([check_of(body)])) & 0xFF == 0


def test_our_request_builder_writes_the_fccs_bytes() -> None:
    assert build_request(1, 0xB8) == B8_PUMP1
    assert build_request(1, 0xAD) == AD_PUMP1
    assert build_request(2, 0xAC) == AC_PUMP2
    assert build_request(1, 0xA4, b"\x07\x85") == SET_PRICE_PUMP1
    assert encode_frame(1, SET_PRICE_BODY) == SET_PRICE_PUMP1


def test_source_frames_decode_and_requests_are_told_by_their_layout() -> None:
    for wire in (B8_PUMP1, A0_PUMP1, SET_PRICE_PUMP1, STATUS_REPLY, VOLUME_TOTAL_REPLY):
        frame, used = decode(wire)
        assert isinstance(frame, Frame) and used == FRAME_LEN and frame.raw == wire
    assert [request_command(decode(w)[0]) for w in (B8_PUMP1, A0_PUMP1, SET_PRICE_PUMP1)] == [  # type: ignore[arg-type]
        0xB8,
        0xA0,
        0xA4,
    ]
    for wire in (STATUS_REPLY, VOLUME_TOTAL_REPLY):
        frame, _ = decode(wire)
        assert isinstance(frame, Frame) and request_command(frame) is None and frame.address == 1


def kinds(items: list[Frame | ProtocolError]) -> list[str]:
    return [i.kind if isinstance(i, ProtocolError) else "frame" for i in items]


def test_garbage_before_between_and_after_frames() -> None:
    decoder = FrameDecoder()
    items = decoder.receive_data(b"\x13\x37" + STATUS_REPLY + b"\xee" + B8_PUMP1)
    items += decoder.receive_data(b"\x99" * 20)
    assert kinds(items).count("frame") == 2 and kinds(items)[0] == "garbage"
    assert decoder.counters["frames"] == 2 and decoder.buffered <= FRAME_LEN - 1


def test_a_corrupted_frame_is_skipped_and_the_next_found() -> None:
    spoilt = STATUS_REPLY[:5] + bytes([STATUS_REPLY[5] ^ 0x01]) + STATUS_REPLY[6:]
    decoder = FrameDecoder()
    items = decoder.receive_data(spoilt + VOLUME_TOTAL_REPLY)
    assert [i.raw for i in items if isinstance(i, Frame)] == [VOLUME_TOTAL_REPLY]
    assert "garbage" in kinds(items)


def test_a_dropped_byte_resynchronises_at_the_next_frame() -> None:
    decoder = FrameDecoder()
    items = decoder.receive_data(B8_PUMP1[:4] + B8_PUMP1[5:] + AD_PUMP1 + AC_PUMP2)
    assert [i.raw for i in items if isinstance(i, Frame)] == [AD_PUMP1, AC_PUMP2]


def test_a_stray_byte_before_a_frame_whose_address_is_its_check() -> None:
    """The documented misframing (framer doc): a window one byte early checks."""
    body = bytes.fromhex("00078501962500250041")
    head = lf_not(body)  # an address byte equal to the check byte
    frame = bytes([head]) + body + bytes([lf_not(body)])
    got, _ = decode(b"\x55" + frame)
    assert isinstance(got, Frame) and got.raw == b"\x55" + frame[:-1]
    decoder = FrameDecoder()
    decoder.receive_data(b"\x55")
    assert decoder.reset() == 1  # what callers do before each question
    assert [i.raw for i in decoder.receive_data(frame) if isinstance(i, Frame)] == [frame]


def test_an_incomplete_frame_waits_then_flush_reports_it() -> None:
    decoder = FrameDecoder()
    assert decoder.receive_data(STATUS_REPLY[:7]) == []
    assert kinds(decoder.flush()) == ["truncated"] and decoder.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.binary(min_size=10, max_size=10), st.integers(1, 11))
def test_build_parse_round_trip_split_anywhere(head: int, body: bytes, cut: int) -> None:
    wire = encode_frame(head, body)
    decoder = FrameDecoder()
    items = decoder.receive_data(wire[:cut]) + decoder.receive_data(wire[cut:])
    assert items == [Frame(wire)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(1, 13))
def test_any_bytes_never_raise_and_frames_have_good_checks(data: bytes, step: int) -> None:
    decoder = FrameDecoder()
    items = []
    for i in range(0, len(data), step):
        items += decoder.receive_data(data[i : i + step])
    items += decoder.flush()
    for item in items:
        if isinstance(item, Frame):
            assert len(item.raw) == FRAME_LEN and item.raw[11] == check_of(item.raw[1:11])
    assert decoder.buffered == 0
