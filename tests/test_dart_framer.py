"""DART framing: layouts, CRC order, DLE escapes, every recovery case."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.crc import crc16_arc
from protocols.dart.framer import (
    MAX_BUFFER,
    MAX_WIRE_FRAME,
    Frame,
    FrameDecoder,
    Result,
    decode,
    encode_frame,
)
from protocols.events import ProtocolError

H = bytes.fromhex

# Frames with their exact wire form (CRC-16/ARC over ADR … data, LSB first).
EXAMPLES = [
    (H("50 20 FA"), Frame.poll(0x50)),  # a poll: no CRC, no ETX (protocols.md §3)
    (H("51 C3 FA"), Frame.ack(0x51, 3)),
    (H("6F 5A FA"), Frame.nak(0x6F, 0xA)),
    (H("52 7F FA"), Frame.eot(0x52, 0xF)),
    (H("50 30 01 01 00 9F 5C 03 FA"), Frame.data(0x50, 0, [(1, b"\x00")])),  # CD1 00
    # CRC 0xFA00: its high byte is escaped (our CD1 04 to pump 26, seq 8).
    (H("69 38 01 01 04 00 10 FA 03 FA"), Frame.data(0x69, 8, [(1, b"\x04")])),
    # CRC 0x9EFA: its low byte is escaped (DC1 5 from pump 12, seq 0).
    (H("5B 30 01 01 05 10 FA 9E 03 FA"), Frame.data(0x5B, 0, [(1, b"\x05")])),
]

DATA_FA = Frame.data(0x53, 2, [(7, b"\xfa\x10\x10\xfa"), (3, b"\x00\x08\x36\x12")])
GOOD = Frame.data(0x51, 1, [(1, b"\x04"), (2, H("00001234 00010316")), (3, H("000836 12"))])
POLL = Frame.poll(0x52)


def feed(*chunks: bytes) -> tuple[list[Result], FrameDecoder]:
    decoder = FrameDecoder()
    out: list[Result] = []
    for chunk in chunks:
        out += decoder.receive_data(chunk)
    return out, decoder


def kinds(items: list[Result]) -> list[str]:
    return [i.kind if isinstance(i, ProtocolError) else "frame" for i in items]


@pytest.mark.parametrize(("wire", "frame"), EXAMPLES)
def test_examples_both_ways(wire: bytes, frame: Frame) -> None:
    assert encode_frame(frame) == wire
    assert decode(wire) == (frame, len(wire))


def test_crc_is_arc_lsb_first() -> None:
    assert crc16_arc(H("50 30 01 01 00")) == 0x5C9F  # sent as 9F 5C
    assert crc16_arc(H("69 38 01 01 04")) == 0xFA00
    assert crc16_arc(H("5B 30 01 01 05")) == 0x9EFA


def test_dle_before_every_fa_inside_and_only_there() -> None:
    wire = encode_frame(DATA_FA)
    body = H("53 32 07 04 10 FA 10 10 10 FA 03 04 00 08 36 12")
    crc = crc16_arc(H("53 32 07 04 FA 10 10 FA 03 04 00 08 36 12"))
    assert wire == body + crc.to_bytes(2, "little") + H("03 FA")
    assert decode(wire) == (DATA_FA, len(wire))


def test_frame_helpers_and_checks() -> None:
    assert (GOOD.kind, GOOD.seq, POLL.kind, POLL.seq) == ("data", 1, "poll", 0)
    assert Frame(0x51, 0x31, ((1, b"\x04"),)) == Frame.data(0x51, 1, [(1, b"\x04")])
    for bad in (
        lambda: Frame(0x4F, 0x20),  # ADR below 0x50
        lambda: Frame(0x70, 0x20),  # ADR above 0x6F
        lambda: Frame(0x50, 0x21),  # no such CTRL
        lambda: Frame(0x50, 0x30),  # DATA without a transaction
        lambda: Frame(0x50, 0xC0, ((1, b""),)),  # ACK with one
        lambda: Frame.data(0x50, 0, [(1, bytes(256))]),  # LNG is one byte
        lambda: Frame.data(0x50, 0, [(1, bytes(200)), (2, bytes(60))]),  # body above 256
    ):
        with pytest.raises(ValueError):
            bad()


def test_decode_is_pure_and_waits_for_more() -> None:
    wire = encode_frame(GOOD)
    for cut in range(len(wire)):
        assert decode(wire[:cut]) == (None, 0)
    assert decode(wire + b"\x00") == (GOOD, len(wire))


def test_long_eot_is_accepted() -> None:
    wire = H("52 71") + crc16_arc(H("52 71")).to_bytes(2, "little") + H("03 FA")
    assert decode(wire) == (Frame.eot(0x52, 1), len(wire))


frames = st.one_of(
    st.builds(Frame.poll, st.integers(0x50, 0x6F)),
    st.builds(Frame.ack, st.integers(0x50, 0x6F), st.integers(0, 15)),
    st.builds(Frame.nak, st.integers(0x50, 0x6F), st.integers(0, 15)),
    st.builds(Frame.eot, st.integers(0x50, 0x6F), st.integers(0, 15)),
    st.builds(
        Frame.data,
        st.integers(0x50, 0x6F),
        st.integers(0, 15),
        st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), min_size=1, max_size=6),
    ),
)


@given(frames)
def test_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire.count(b"\xfa") == 1 + wire.count(b"\x10\xfa")  # one stop flag, the rest escaped
    assert decode(wire) == (frame, len(wire))


@given(st.lists(frames, min_size=1, max_size=6), st.lists(st.integers(0, 400)))
def test_split_anywhere_still_decodes(batch: list[Frame], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(f) for f in batch)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    items, decoder = feed(*chunks)
    assert items == batch and decoder.buffered == 0


# Garbage that can start no frame: no ADR byte (0x50–0x6F) in it.
clean_garbage = st.binary(min_size=1, max_size=30).filter(
    lambda b: not any(0x50 <= x <= 0x6F for x in b)
)


@given(st.lists(st.tuples(clean_garbage, frames), max_size=5), clean_garbage)
def test_garbage_before_between_after_is_skipped_and_counted(
    pairs: list[tuple[bytes, Frame]], tail: bytes
) -> None:
    wire = b"".join(g + encode_frame(f) for g, f in pairs) + tail
    items, decoder = feed(wire)
    expected: list[Result] = []
    for garbage, frame in pairs:
        expected += [ProtocolError("garbage", f"{len(garbage)} bytes skipped"), frame]
    expected.append(ProtocolError("garbage", f"{len(tail)} bytes skipped"))
    assert items == expected
    assert decoder.counters["garbage_bytes"] == sum(len(g) for g, _ in pairs) + len(tail)
    assert decoder.buffered == 0


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=30), frames), max_size=5))
def test_any_noise_between_frames_loses_no_frame(pairs: list[tuple[bytes, Frame]]) -> None:
    wire = b"".join(noise + encode_frame(f) for noise, f in pairs)
    decoder = FrameDecoder()
    items = decoder.receive_data(wire) + decoder.flush()
    got = [i for i in items if isinstance(i, Frame)]
    want = [f for _, f in pairs]
    # Noise may itself hold frames (a random "5x 20 FA" is a poll): ours come in order.
    it = iter(got)
    assert all(any(g == w for g in it) for w in want)


@given(st.lists(st.binary(max_size=700), max_size=8))
def test_arbitrary_bytes_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        decoder.receive_data(chunk)
        assert decoder.buffered < MAX_WIRE_FRAME
    decoder.flush()
    assert decoder.buffered == 0


def test_bad_crc_then_next_frame() -> None:
    bad = bytearray(encode_frame(GOOD))
    bad[5] ^= 0x01  # a data byte
    items, decoder = feed(bytes(bad) + encode_frame(POLL))
    assert kinds(items) == ["bad_crc", "frame"] and items[1] == POLL
    assert decoder.counters["bad_crc"] == 1 and decoder.counters["garbage_bytes"] == 0


def test_lost_stop_flag_frame_swallows_the_next_which_is_still_found() -> None:
    first = bytearray(encode_frame(GOOD))
    first[-1] = 0x00  # SF hit: the frame runs on into the next one
    items, _ = feed(bytes(first) + encode_frame(DATA_FA))
    assert kinds(items) == ["bad_crc", "frame"] and items[1] == DATA_FA


def test_missing_dle_is_a_bad_escape_then_garbage_then_next_frame() -> None:
    wire = encode_frame(DATA_FA)
    assert wire[4:6] == H("10 FA")
    cut = wire[:4] + wire[5:]  # the first DLE lost: that FA now ends the frame
    items, decoder = feed(cut + encode_frame(POLL))
    assert kinds(items) == ["bad_escape", "garbage", "frame"] and items[2] == POLL
    assert decoder.counters["bad_escape"] == 1
    assert decoder.counters["garbage_bytes"] == len(cut) - 5


def test_dle_before_the_stop_flag_runs_on_until_flush() -> None:
    wire = bytearray(encode_frame(GOOD))
    wire[-2] = 0x10  # ETX hit into DLE: the SF is now data
    items, decoder = feed(bytes(wire))
    assert items == [] and decoder.buffered == len(wire)
    assert kinds(decoder.flush()) == ["truncated"]
    assert decoder.buffered == 0
    # With a frame behind it, the run ends at that frame's SF and the hunt finds it.
    items, _ = feed(bytes(wire) + encode_frame(DATA_FA))
    assert kinds(items) == ["bad_crc", "frame"] and items[1] == DATA_FA


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (H("51 31 FA"), "truncated"),  # DATA CTRL then SF
        (H("51 31 03 FA"), "truncated"),  # no room for the CRC
        (H("51 31 01 01 FA"), "bad_escape"),  # ended by an FA without ETX before it
    ],
)
def test_short_or_cut_frames(wire: bytes, kind: str) -> None:
    items, decoder = feed(wire + encode_frame(POLL))
    assert kinds(items) == [kind, "frame"] and decoder.counters[kind] == 1


def with_crc(content: bytes) -> bytes:
    """ADR CTRL body as a long frame with a good CRC, whatever the body says."""
    crc = crc16_arc(content).to_bytes(2, "little")
    return content[:2] + (content[2:] + crc).replace(b"\xfa", b"\x10\xfa") + H("03 FA")


@pytest.mark.parametrize(
    "content",
    [
        H("51 31 01 05 00"),  # LNG 5 with one byte behind it
        H("51 31 01"),  # TRANS without LNG
        H("51 20 01 01 00"),  # a POLL with a body
        H("51 C1 01 01 00"),  # an ACK with a body
        H("51 71 01 01 00"),  # an EOT with data
        H("51 31"),  # DATA with no transaction
    ],
)
def test_good_crc_bad_body_is_bad_message(content: bytes) -> None:
    items, decoder = feed(with_crc(content) + encode_frame(POLL))
    assert kinds(items) == ["bad_message", "frame"] and decoder.counters["bad_message"] == 1


def test_no_stop_flag_within_the_bound_is_truncated_at_once() -> None:
    run = H("51 31") + bytes([0x01]) * (MAX_WIRE_FRAME - 2)
    items, decoder = feed(run)
    assert items == [ProtocolError("truncated", f"no stop flag within {MAX_WIRE_FRAME} bytes")]
    assert decoder.buffered == 0


def test_flush_gives_up_incomplete_frame_and_finds_what_it_hid() -> None:
    wire = encode_frame(GOOD)
    items, decoder = feed(H("55 31 01 02") + wire[:-1])  # bogus start, then a frame minus SF
    assert items == []
    assert kinds(decoder.flush()) == ["truncated", "truncated"]
    items, decoder = feed(H("55 31 01 02") + wire)
    assert kinds(items) == ["bad_crc", "frame"] and items[1] == GOOD


def test_final_adr_byte_is_kept_other_trailing_garbage_reported() -> None:
    items, decoder = feed(H("00 01 55"))
    assert items == [ProtocolError("garbage", "2 bytes skipped")] and decoder.buffered == 1
    items = decoder.receive_data(H("20 FA"))
    assert items == [Frame.poll(0x55)]


def test_one_large_read_beyond_buffer_bound() -> None:
    count = 3 * MAX_BUFFER // len(encode_frame(GOOD))
    items, decoder = feed(encode_frame(GOOD) * count)
    assert items == [GOOD] * count and decoder.buffered == 0
