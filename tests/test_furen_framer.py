"""Furen Haosheng framing (fangym0335/first src/lischn009.c): frames written byte
by byte from the FCC driver's code, the length rule of src/spec.c, every
recovery case of the shared engine in the unescaped form, and the optional
Sinopec-style escape."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import ProtocolError
from protocols.furen.framer import (
    ESCAPED,
    MAX_DATA_LEN,
    UNESCAPED,
    Frame,
    FrameDecoder,
    encode_frame,
    nozzle_ctrl,
)

H = bytes.fromhex


def crc_lrc_c(data: bytes) -> int:
    """CRC_16 of fangym0335/first src/lrc.c:122-134, bit by bit: the table there
    is polynomial 0xA001 (src/lrc.h:9), initial value 0, no final XOR. Written
    here apart from protocols/crc.py so the frames below do not check our CRC
    against itself."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def fcc_frame(*head_and_data: int) -> bytes:
    """A frame as the FCC builds it: cmd[0..] as given, then ``crc >> 8`` and
    ``crc & 0xFF`` of CRC_16(&cmd[1], cmd[5] + 5) (e.g. lischn009.c:1513-1515)."""
    cmd = bytes(head_and_data)
    crc = crc_lrc_c(cmd[1 : 1 + cmd[5] + 5])
    return cmd + bytes([crc >> 8, crc & 0xFF])


#: The status request (lischn009.c:1505-1515) at 2008-08-20 10:30:00, the time
#: as getlocaltime() writes it (src/mytime.c:14-70: BCD YYYY MM DD hh mm ss).
STATUS_REQUEST = fcc_frame(0xFA, 0x00, 0x00, 0x00, 0x00, 0x08, 0x30,
                           0x20, 0x08, 0x08, 0x20, 0x10, 0x30, 0x00)  # fmt: skip
#: The sale read of nozzle 2 (lnz 1): lischn009.c:1159-1169.
SALE_REQUEST = fcc_frame(0xFA, 0x00, 0x00, 0xF0 | 1, 0x00, 0x01, 0x56)
#: The totals read of nozzle 1: lischn009.c:1100-1110.
TOTALS_REQUEST = fcc_frame(0xFA, 0x00, 0x00, 0xF0 | 0, 0x00, 0x01, 0x58)
#: Authorise: lischn009.c:1283-1293 (a command the collector never sends).
AUTHORISE = fcc_frame(0xFA, 0x00, 0x00, 0x00, 0x00, 0x02, 0x61, 0x01)
#: Host-control mode: lischn009.c:1971-1987.
HOST_MODE = fcc_frame(0xFA, 0x00, 0x00, 0x00, 0x00, 0x03, 0x5D, 0x01, 0x01)
#: A 27-byte sale record of nozzle 2 (lischn009.c:1170), laid out as DoEot reads
#: it (:1012-1054): 25.00 L, 196.25 yuan, 7.85 yuan/L, totals 1234.56 L and
#: 98765.43 yuan after it.
SALE_REPLY = fcc_frame(0xFA, 0x00, 0x00, 0xF1, 0x00, 0x13, 0x56,
                       0x00, 0x25, 0x00, 0x01, 0x96, 0x25, 0x07, 0x85,
                       0x00, 0x00, 0x12, 0x34, 0x56, 0x00, 0x09, 0x87, 0x65, 0x43)  # fmt: skip

SOURCE_FRAMES = [
    (STATUS_REQUEST, Frame(0, 0, 0, H("30 20 08 08 20 10 30 00"))),
    (SALE_REQUEST, Frame(0, 0, 0xF1, b"\x56")),
    (TOTALS_REQUEST, Frame(0, 0, 0xF0, b"\x58")),
    (AUTHORISE, Frame(0, 0, 0, b"\x61\x01")),
    (HOST_MODE, Frame(0, 0, 0, b"\x5d\x01\x01")),
    (SALE_REPLY, Frame(0, 0, 0xF1, H("56 002500 019625 0785 0000123456 0009876543"))),
]


@pytest.mark.parametrize(("wire", "frame"), SOURCE_FRAMES)
def test_the_fccs_frames_decode_and_encode_byte_for_byte(wire: bytes, frame: Frame) -> None:
    # spec.c:185-191: a frame is [5] + 8 bytes long.
    assert len(wire) == wire[5] + 8
    assert UNESCAPED.decode_at(wire, 0) == (frame, len(wire))
    assert encode_frame(frame) == wire


def test_the_literal_frames_stay_what_they_were() -> None:
    assert STATUS_REQUEST.hex(" ").upper() == "FA 00 00 00 00 08 30 20 08 08 20 10 30 00 9A BB"
    assert SALE_REQUEST.hex(" ").upper() == "FA 00 00 F1 00 01 56 52 B3"
    assert len(SALE_REPLY) == 27


def test_nozzle_ctrl_is_f0_or_the_nozzle_index() -> None:
    # lischn009.c:1162 ("0xF0 | lnz"), :1581 ("0xF0 - 0xF7: LNZ 1 - 8").
    assert [nozzle_ctrl(n) for n in (1, 2, 8)] == [0xF0, 0xF1, 0xF7]
    assert Frame(0, 0, 0xF3, b"\x56").nozzle_byte == 4
    assert Frame(0, 0, 0x01, b"\x56").nozzle_byte is None
    for bad in (0, 9):
        with pytest.raises(ValueError):
            nozzle_ctrl(bad)


def test_an_fa_inside_an_unescaped_frame_is_data() -> None:
    frame = Frame(0, 0, 0xF0, H("50 FA FA"))
    wire = encode_frame(frame)
    assert wire.count(b"\xfa") == 3  # nothing doubled
    assert UNESCAPED.decode_at(wire, 0) == (frame, len(wire))
    # Escaped (the option): doubled as on the Sinopec link, and read back.
    escaped = encode_frame(frame, escaped=True)
    assert escaped.count(b"\xfa") == 5
    assert ESCAPED.decode_at(escaped, 0) == (frame, len(escaped))


def kinds(items: list[Frame | ProtocolError]) -> list[str]:
    return [i.kind if isinstance(i, ProtocolError) else "frame" for i in items]


def test_garbage_before_between_and_after_frames() -> None:
    decoder = FrameDecoder()
    got = decoder.receive_data(b"\x01\x02" + SALE_REQUEST + b"\x07" + SALE_REPLY + b"\x33")
    assert kinds(got) == ["garbage", "frame", "garbage", "frame", "garbage"]
    assert decoder.counters["garbage_bytes"] == 4
    assert decoder.buffered == 0
    # An FA where a frame may start is tried as one: here its length is no
    # length, and the hunt goes on to the next frame.
    got = decoder.receive_data(b"\xfa\x07" + SALE_REPLY)
    assert kinds(got) == ["bad_length", "frame"]


def test_a_bad_crc_is_reported_and_the_next_frame_found() -> None:
    hit = bytearray(SALE_REPLY)
    hit[10] ^= 0x01
    decoder = FrameDecoder()
    assert kinds(decoder.receive_data(bytes(hit) + TOTALS_REQUEST)) == ["bad_crc", "frame"]


def test_a_frame_cut_short_is_found_behind_the_one_that_swallowed_it() -> None:
    # The request cut after 5 bytes swallows the reply's first bytes as its own
    # data; its CRC fails and the hunt from its start finds the reply.
    decoder = FrameDecoder()
    got = decoder.receive_data(STATUS_REQUEST[:9] + SALE_REPLY + SALE_REQUEST)
    assert kinds(got)[-2:] == ["frame", "frame"]
    assert got[-2] == SOURCE_FRAMES[5][1]


def test_a_bad_length_is_reported_at_once() -> None:
    decoder = FrameDecoder()
    # LEN 01 00 = 256: spec.c:188 says a length is never above 255.
    got = decoder.receive_data(H("FA 00 00 F0 01 00 56") + SALE_REQUEST)
    assert kinds(got) == ["bad_length", "frame"]
    too_long = bytes([0xFA, 0, 0, 0xF0, 0, MAX_DATA_LEN + 1, 0x56])
    assert kinds(FrameDecoder().receive_data(too_long + SALE_REQUEST))[0] == "bad_length"


def test_flush_reports_the_incomplete_frame_and_empties_the_buffer() -> None:
    decoder = FrameDecoder()
    assert decoder.receive_data(SALE_REPLY[:20]) == []
    assert decoder.buffered == 20
    assert kinds(decoder.flush()) == ["truncated"]
    assert decoder.buffered == 0


frames = st.builds(
    Frame,
    b1=st.integers(0, 0xFF),
    b2=st.integers(0, 0xFF),
    ctrl=st.integers(0, 0xFF),
    data=st.binary(min_size=1, max_size=MAX_DATA_LEN),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, min_size=1, max_size=5), st.booleans(), st.integers(1, 40))
def test_build_then_parse_round_trips_whatever_the_reads(
    sent: list[Frame], escaped: bool, chunk: int
) -> None:
    # Escaped framing needs b1 != FA (a lone FA starts a frame), as Sinopec's.
    if escaped:
        sent = [Frame(0 if f.b1 == 0xFA else f.b1, f.b2, f.ctrl, f.data) for f in sent]
    wire = b"".join(encode_frame(f, escaped=escaped) for f in sent)
    decoder = FrameDecoder(escaped=escaped)
    got: list[Frame | ProtocolError] = []
    for i in range(0, len(wire), chunk):
        got += decoder.receive_data(wire[i : i + chunk])
    assert got == sent


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_noise_never_raises_and_the_buffer_stays_bounded(noise: bytes, escaped: bool) -> None:
    decoder = FrameDecoder(escaped=escaped)
    for item in decoder.receive_data(noise + SALE_REQUEST):
        assert isinstance(item, Frame | ProtocolError)
    assert decoder.buffered <= decoder.MAX_BUFFER
    decoder.flush()
    assert decoder.buffered == 0
