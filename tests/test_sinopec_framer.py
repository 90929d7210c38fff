"""Sinopec framing (protocols.md §2): CRC, escapes, every recovery case."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bcd import bcd_decode, bcd_encode
from protocols.crc import crc16_arc
from protocols.events import ProtocolError
from protocols.sinopec import framer
from protocols.sinopec.framer import (
    MAX_BUFFER,
    MAX_DATA_LEN,
    MAX_WIRE_FRAME,
    Frame,
    FrameDecoder,
    decode,
    encode_frame,
)

# The computed examples of protocols.md §2 ("CRC verified").
EXAMPLE_POLL = bytes.fromhex("FA 00 01 01 00 01 30 B8 3D")
EXAMPLE_ESCAPED = bytes.fromhex("FA 00 01 02 00 03 31 FA FA 10 C5 03")
EXAMPLES = [
    (EXAMPLE_POLL, Frame(dst=0x00, src=0x01, ctrl=0x01, data=b"\x30")),
    (EXAMPLE_ESCAPED, Frame(dst=0x00, src=0x01, ctrl=0x02, data=b"\x31\xfa\x10")),
]
A, B = EXAMPLES[0][1], EXAMPLES[1][1]

frames = st.builds(
    Frame,
    dst=st.integers(0, 0xFF).filter(lambda b: b != 0xFA),  # addresses ≤ 0xF9 (§2)
    src=st.integers(0, 0xFF),
    ctrl=st.integers(0, 0xFF),
    data=st.binary(min_size=1, max_size=MAX_DATA_LEN),
)
small_frames = st.builds(
    Frame,
    dst=st.sampled_from([0x00, 0x01, 0x02, 0xE0, 0xF9]),
    src=st.sampled_from([0x01, 0xE0, 0xFA]),
    ctrl=st.integers(0, 0xFF),
    data=st.binary(min_size=1, max_size=40),
)
clean_garbage = st.binary(max_size=20).map(lambda b: b.replace(b"\xfa", b""))


def feed(chunks: list[bytes]) -> tuple[list[Frame], list[ProtocolError], FrameDecoder]:
    decoder = FrameDecoder()
    out: list[Frame | ProtocolError] = []
    for chunk in chunks:
        out += decoder.receive_data(chunk)
        assert decoder.buffered < MAX_WIRE_FRAME
    return (
        [x for x in out if isinstance(x, Frame)],
        [x for x in out if isinstance(x, ProtocolError)],
        decoder,
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_crc16_arc_check_value() -> None:
    assert crc16_arc(b"123456789") == 0xBB3D
    assert crc16_arc(b"") == 0


@pytest.mark.parametrize(("wire", "frame"), EXAMPLES)
def test_protocols_md_examples_both_ways(wire: bytes, frame: Frame) -> None:
    assert decode(wire) == (frame, len(wire))
    assert encode_frame(frame) == wire
    assert FrameDecoder().receive_data(wire) == [frame]


def test_frame_helpers() -> None:
    frame = Frame(dst=1, src=0xE0, ctrl=0x45, data=b"\x32\x00")
    assert frame.frame_no == 0x05 and frame.command == 0x32
    with pytest.raises(ValueError):
        Frame(dst=1, src=2, ctrl=3, data=b"")
    with pytest.raises(ValueError):
        Frame(dst=1, src=2, ctrl=3, data=bytes(MAX_DATA_LEN + 1))
    with pytest.raises(ValueError):
        Frame(dst=256, src=2, ctrl=3, data=b"\x30")


def test_bcd() -> None:
    assert bcd_encode(96, 2) == b"\x00\x96"
    assert bcd_decode(b"\x10\x92") == 1092
    assert bcd_decode(b"\x00\x9a") is None
    with pytest.raises(ValueError):
        bcd_encode(10000, 2)


def test_decode_is_pure_and_waits_for_more() -> None:
    for cut in range(1, len(EXAMPLE_ESCAPED)):
        assert decode(EXAMPLE_ESCAPED[:cut]) == (None, 0)
    assert decode(b"") == (None, 0)
    assert decode(b"\xfa") == (None, 0)  # a final FA may start the next frame
    assert decode(EXAMPLE_POLL + b"\x01") == (A, len(EXAMPLE_POLL))


@given(frames)
def test_escape_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire[0] == 0xFA
    body = wire[1:]
    assert b"\xfa" not in body.replace(b"\xfa\xfa", b""), "every inner FA is doubled"
    raw = body.replace(b"\xfa\xfa", b"\xfa")
    assert len(raw) == 5 + len(frame.data) + 2
    assert crc16_arc(raw[:-2]) == int.from_bytes(raw[-2:], "big")
    assert decode(wire) == (frame, len(wire))


@given(st.lists(small_frames, min_size=1, max_size=6), st.lists(st.integers(0, 10_000)))
def test_split_anywhere_still_decodes(batch: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in batch)
    got, errors, _ = feed(split(stream, cuts))
    assert got == batch and errors == []


def test_every_byte_boundary() -> None:
    stream = EXAMPLE_POLL + EXAMPLE_ESCAPED + EXAMPLE_POLL
    assert feed([bytes([b]) for b in stream])[0] == [A, B, A]
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            got, errors, _ = feed([stream[:i], stream[i:j], stream[j:]])
            assert (got, errors) == ([A, B, A], [])


@given(st.lists(st.tuples(clean_garbage, small_frames), max_size=5), clean_garbage)
def test_garbage_before_between_after_is_skipped_and_counted(
    pairs: list[tuple[bytes, Frame]], tail: bytes
) -> None:
    stream = b"".join(g + encode_frame(f) for g, f in pairs) + tail
    runs = [g for g, _ in pairs if g] + ([tail] if tail else [])
    got, errors, decoder = feed([stream])
    assert got == [f for _, f in pairs]
    assert [e.kind for e in errors] == ["garbage"] * len(runs)
    assert [e.detail for e in errors] == [f"{len(g)} bytes skipped" for g in runs]
    assert decoder.counters["garbage_bytes"] == sum(map(len, runs))
    assert decoder.counters["frames"] == len(pairs)


@given(
    st.lists(st.tuples(clean_garbage, small_frames), max_size=5),
    clean_garbage,
    st.lists(st.integers(0, 10_000)),
)
def test_garbage_counted_whatever_the_reads(
    pairs: list[tuple[bytes, Frame]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(g + encode_frame(f) for g, f in pairs) + tail
    got, errors, decoder = feed(split(stream, cuts))
    assert got == [f for _, f in pairs]
    assert {e.kind for e in errors} <= {"garbage"}
    assert decoder.counters["garbage_bytes"] == sum(len(g) for g, _ in pairs) + len(tail)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=30), small_frames), max_size=5))
def test_any_noise_between_frames_loses_no_frame(pairs: list[tuple[bytes, Frame]]) -> None:
    """Noise may hold FA FA pairs and bogus frame starts; every good frame survives."""
    stream = b"".join(g + encode_frame(f) for g, f in pairs)
    decoder = FrameDecoder()
    out = decoder.receive_data(stream) + decoder.flush()
    assert [x for x in out if isinstance(x, Frame)] == [f for _, f in pairs]
    kinds = {x.kind for x in out if isinstance(x, ProtocolError)}
    assert kinds <= {"garbage", "bad_crc", "bad_length", "truncated"}
    assert decoder.buffered == 0


@given(st.lists(st.binary(max_size=600), max_size=8))
def test_arbitrary_bytes_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        for item in decoder.receive_data(chunk):
            assert isinstance(item, Frame | ProtocolError)
        assert decoder.buffered < MAX_WIRE_FRAME <= MAX_BUFFER


def test_bad_crc_rejected_counted_and_next_frame_decoded() -> None:
    bad = EXAMPLE_POLL[:-1] + b"\x3c"
    got, errors, decoder = feed([EXAMPLE_POLL + bad + EXAMPLE_ESCAPED])
    assert got == [A, B]
    assert [e.kind for e in errors] == ["bad_crc"]
    assert decoder.counters["bad_crc"] == 1 and decoder.counters["frames"] == 2


def test_bad_crc_inside_escape_hunts_from_frame_start() -> None:
    # A frame cut right after the first FA of an escape pair swallows the next
    # frame's leading FA; the hunt from the bad frame's start still finds it.
    cut = EXAMPLE_ESCAPED[:8]
    assert cut.endswith(b"\x31\xfa")
    got, errors, _ = feed([cut + EXAMPLE_POLL])
    assert got == [A]
    assert [e.kind for e in errors] == ["bad_crc"]


@pytest.mark.parametrize(
    "length",
    [b"\x00\x0a", b"\xa0\x01", b"\x00\x00", bcd_encode(MAX_DATA_LEN + 1, 2), b"\x99\x99"],
)
def test_bad_or_oversize_length_rejected_without_waiting(length: bytes) -> None:
    bogus = b"\xfa\x00\x01\x02" + length + b"\x30"
    got, errors, decoder = feed([bogus + EXAMPLE_POLL])
    assert got == [A]
    assert [e.kind for e in errors] == ["bad_length"]
    assert decoder.counters["bad_length"] == 1


def test_truncated_frame_then_good_frame() -> None:
    got, errors, decoder = feed([EXAMPLE_ESCAPED[:6], EXAMPLE_POLL])
    assert got == [A]
    assert [e.kind for e in errors] == ["truncated"]
    assert decoder.counters["truncated"] == 1


def test_flush_gives_up_incomplete_frame_and_finds_what_it_hid() -> None:
    decoder = FrameDecoder()
    # A bogus start in noise (LEN 20) swallows the good frame behind it.
    bogus = bytes.fromhex("FA 05 01 02 00 20 AA FA")
    assert decoder.receive_data(bogus + EXAMPLE_POLL) == []
    out = decoder.flush()
    assert [type(x).__name__ for x in out] == ["ProtocolError", "Frame"]
    assert out[1] == A and decoder.buffered == 0
    assert decoder.flush() == []


def test_one_large_read_beyond_buffer_bound() -> None:
    stream = (EXAMPLE_POLL + EXAMPLE_ESCAPED) * 200
    assert len(stream) > MAX_BUFFER
    got, errors, _ = feed([stream])
    assert got == [A, B] * 200 and errors == []


@settings(max_examples=300)
@given(
    st.lists(st.one_of(st.binary(max_size=12), small_frames.map(encode_frame)), max_size=5),
    st.integers(0, 10),
)
def test_unescaped_fast_path_agrees_with_the_byte_loop(parts: list[bytes], start: int) -> None:
    buf = b"\xfa" + b"".join(parts)
    for i in range(min(start, len(buf) - 1), len(buf)):
        if buf[i] == 0xFA:
            assert framer._parse_at(buf, i) == framer._parse_escaped(buf, i)
