"""``census(data)`` of each protocol: what a stretch of line bytes says (line
checks, ``forecourt detect``). Frames are protocols.md's own where it gives
them (cited), else built with the protocol's encoder from its layout."""

from __future__ import annotations

import pytest

import protocols
from protocols.dart.census import census as dart_census
from protocols.dart.framer import Frame as DartFrame
from protocols.dart.framer import encode_frame as dart_encode
from protocols.descriptor import Census
from protocols.events import ProtocolError
from protocols.sinopec.census import census as sinopec_census
from protocols.sinopec.framer import Frame as SinopecFrame
from protocols.sinopec.framer import encode_frame as sinopec_encode
from protocols.tally import Tally
from protocols.uninfo.census import census as uninfo_census
from tests.test_uninfo_monitor import CONVERSATION as UNINFO_CONVERSATION

H = bytes.fromhex

#: protocols.md §2, "Computed examples (CRC verified)": a poll, and a frame
#: with an escaped FA.
SINOPEC_MD = [H("FA 00 01 01 00 01 30 B8 3D"), H("FA 00 01 02 00 03 31 FA FA 10 C5 03")]
#: protocols.md §3: "A poll is ADR 20 FA" (pump 1: ADR 0x50).
DART_MD_POLL = H("50 20 FA")

#: A POS at E0 polls pump 3 (30) and pump 3 answers with real-time info (31).
SINOPEC_EXCHANGE = sinopec_encode(SinopecFrame(0x03, 0xE0, 0x41, b"\x30")) + sinopec_encode(
    SinopecFrame(0xE0, 0x03, 0x01, b"\x31\x01\x00")
)
#: A master polls pump 12; pump 12 answers DC2 (volume, amount) and DC3
#: (price, NOZIO) in one DATA frame; the master ACKs it.
DART_EXCHANGE = (
    dart_encode(DartFrame.poll(0x5B))
    + dart_encode(DartFrame.data(0x5B, 1, [(2, H("00001234 00010316")), (3, H("000836 12"))]))
    + dart_encode(DartFrame.ack(0x5B, 1))
)


def test_sinopec_counts_the_protocols_md_frames() -> None:
    got = sinopec_census(b"".join(SINOPEC_MD))
    # 00 and 01 are both pump-side numbers: good frames, but no side to tell.
    assert (got.good_frames, got.bad_frames, got.master_frames, got.pump_frames) == (2, 0, 0, 0)
    assert got.evidence == ("sinopec 01→00 command 30", "sinopec 01→00 command 31")


def test_sinopec_tells_the_sides_by_the_pos_address_range() -> None:
    got = sinopec_census(SINOPEC_EXCHANGE)
    assert got == Census(
        good_frames=2,
        bad_frames=0,
        addresses=frozenset({3}),
        master_frames=1,
        pump_frames=1,
        evidence=("sinopec E0→03 command 30", "sinopec 03→E0 command 31"),
    )


def test_sinopec_never_counts_a_frame_whose_crc_failed() -> None:
    bad_crc = SINOPEC_MD[0][:-1] + b"\x3e"  # last CRC byte hit
    got = sinopec_census(b"\x00\x11\x22" + bad_crc + SINOPEC_MD[1])
    assert (got.good_frames, got.bad_frames) == (1, 2)  # the garbage run once, the bad CRC
    cut = sinopec_census(SINOPEC_MD[0] + SINOPEC_MD[1][:5])
    assert (cut.good_frames, cut.bad_frames) == (1, 0)  # cut by the end: neither


def test_dart_counts_the_protocols_md_poll_as_the_masters() -> None:
    got = dart_census(DART_MD_POLL)
    assert got == Census(1, 0, frozenset({1}), 1, 0, ("dart pump 1 poll",))


def test_dart_tells_a_pumps_reply_from_its_layout() -> None:
    got = dart_census(DART_EXCHANGE)
    assert (got.good_frames, got.bad_frames, got.addresses) == (3, 0, frozenset({12}))
    # The poll is the master's, DC2 + DC3 the pump's; an ACK goes both ways.
    assert (got.master_frames, got.pump_frames) == (1, 1)
    hit = bytearray(DART_EXCHANGE)
    hit[5] ^= 0x01  # the reply's first TRANS byte: its CRC fails
    got = dart_census(bytes(hit))
    assert (got.good_frames, got.bad_frames, got.pump_frames) == (2, 1, 0)


#: An FCC's conversation with an Uninfo pump (tests/test_uninfo_monitor.py).
UNINFO_LOOP = b"".join(r + a for r, a in UNINFO_CONVERSATION)


@pytest.mark.parametrize(
    ("census", "foreign"),
    [
        (sinopec_census, DART_EXCHANGE * 8),
        (dart_census, (SINOPEC_EXCHANGE + SINOPEC_MD[1]) * 8),
        (uninfo_census, DART_EXCHANGE * 8),
        (uninfo_census, (SINOPEC_EXCHANGE + SINOPEC_MD[1]) * 8),
        (sinopec_census, UNINFO_LOOP * 4),
        (dart_census, UNINFO_LOOP * 4),
    ],
    ids=[
        "sinopec-reads-dart",
        "dart-reads-sinopec",
        "uninfo-reads-dart",
        "uninfo-reads-sinopec",
        "sinopec-reads-uninfo",
        "dart-reads-uninfo",
    ],
)
def test_another_protocols_bytes_yield_no_good_frame(census: object, foreign: bytes) -> None:
    assert callable(census)
    got = census(foreign)
    assert got.good_frames == 0 and got.bad_frames > 0 and not got.addresses


def test_every_descriptors_census_loads_and_reads_nothing_from_nothing() -> None:
    with_census = [d for d in protocols.descriptors() if d.census is not None]
    assert {"sinopec", "dart"} <= {d.name for d in with_census}
    for found in with_census:
        assert found.load("census")(b"") == Census(), found.name


def test_a_tally_counts_framing_errors_and_a_walks_cut_frame_not() -> None:
    bad = ProtocolError("bad_crc", "x")
    cut = ProtocolError("truncated", "a frame cut by the end")
    tally = Tally(evidence=1)
    assert list(tally.sift(["a", bad, "b", cut])) == ["a", "b"]
    assert tally.bad == 2  # a framer's truncated frame is an error
    walked = Tally(evidence=1)
    assert list(walked.sift_walk([(0, "a"), (1, bad), (5, "b"), (9, cut)])) == ["a", "b"]
    assert walked.bad == 1  # the walk's cut frame is not counted
