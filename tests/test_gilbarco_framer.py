"""Gilbarco framing: every recovery case of the framer's module doc."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import ProtocolError
from protocols.gilbarco.framer import (
    MAX_BUFFER,
    MAX_FRAME_LEN,
    Frame,
    FrameDecoder,
    decode,
    encode_frame,
)
from protocols.gilbarco.messages import (
    GradeTotals,
    TotalsData,
    TransactionData,
    totals_body,
    transaction_body,
)

TXN = encode_frame(transaction_body(TransactionData(1, 785, 2000, 15700)))
TOT = encode_frame(totals_body(TotalsData((GradeTotals(1, 10_002_000, 80_000_000),))))
BAD_LRC = TXN[:-2] + bytes([TXN[-2] ^ 0x01, 0xF0])  # LRC word E2 → E3


def feed(*chunks: bytes) -> tuple[list[Frame], list[tuple[str, str]], FrameDecoder]:
    decoder = FrameDecoder()
    out: list[Frame | ProtocolError] = []
    for chunk in chunks:
        out += decoder.receive_data(chunk)
        assert decoder.buffered < MAX_FRAME_LEN
    frames = [x for x in out if isinstance(x, Frame)]
    errors = [(x.kind, x.detail) for x in out if isinstance(x, ProtocolError)]
    return frames, errors, decoder


def kinds(errors: list[tuple[str, str]]) -> list[str]:
    return [k for k, _ in errors]


def test_decode_is_pure_and_incremental() -> None:
    for cut in range(len(TXN)):
        assert decode(TXN[:cut]) == (None, 0)
    frame, consumed = decode(TXN + TOT)
    assert isinstance(frame, Frame) and frame.raw == TXN and consumed == len(TXN)
    assert decode(bytearray(TOT))[1] == len(TOT)


def test_garbage_before_between_and_after() -> None:
    frames, errors, decoder = feed(b"\x01\x02\xe3" + TXN + b"\x91\xf7" + TOT + b"\x00\xfe\xe1")
    assert [f.raw for f in frames] == [TXN, TOT]
    assert errors == [
        ("garbage", "3 bytes skipped"),
        ("garbage", "2 bytes skipped"),
        ("garbage", "3 bytes skipped"),
    ]
    assert decoder.counters["garbage_bytes"] == 8 and decoder.buffered == 0


def test_bad_lrc_then_hunt_for_the_next_stx() -> None:
    frames, errors, decoder = feed(BAD_LRC + b"\xe1\xe2" + TXN)
    assert [f.raw for f in frames] == [TXN]
    assert errors == [("bad_lrc", "LRC 3, computed 2"), ("garbage", "2 bytes skipped")]
    assert decoder.counters["bad_lrc"] == 1


def test_digit_changed_inside_is_bad_lrc() -> None:
    changed = bytearray(TXN)
    changed[10] ^= 0x04  # a volume digit E0 → E4
    frames, errors, _ = feed(bytes(changed) + TOT)
    assert [f.raw for f in frames] == [TOT] and kinds(errors) == ["bad_lrc"]


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (0x31, "unexpected byte 31 at frame offset 3"),
        (0xEA, "unexpected byte EA at frame offset 3"),
        (0xF3, "unexpected byte F3 at frame offset 3"),
        (0xFC, "unexpected byte FC at frame offset 3"),
    ],
)
def test_unexpected_byte_inside(bad: int, detail: str) -> None:
    wire = TXN[:3] + bytes([bad]) + TXN[4:]
    frames, errors, _ = feed(wire + TOT)
    assert [f.raw for f in frames] == [TOT]
    assert errors == [("bad_message", detail)]  # the hunt took the rest of the bad frame


def test_data_word_before_any_control_word() -> None:
    frames, errors, _ = feed(b"\xff\xe1" + TXN)
    assert [f.raw for f in frames] == [TXN]
    assert errors == [
        ("bad_message", "unexpected data word before any control word E1 at frame offset 1")
    ]


def test_truncated_by_a_new_stx() -> None:
    frames, errors, decoder = feed(TXN[:9] + TOT)
    assert [f.raw for f in frames] == [TOT]
    assert errors == [("truncated", "frame cut by STX after 9 bytes")]
    assert decoder.counters["truncated"] == 1


def test_truncated_at_fb_or_lrc_word() -> None:
    for cut in (len(TXN) - 2, len(TXN) - 1):  # FF … FB | FF …, FF … FB E2 | FF …
        frames, errors, _ = feed(TXN[:cut] + TXN)
        assert [f.raw for f in frames] == [TXN] and kinds(errors) == ["truncated"]


def test_early_etx_and_missing_lrc_word() -> None:
    frames, errors, _ = feed(b"\xff\xf6\xe1\xf0" + b"\xff\xf6\xe1\xfb\xf0" + TOT)
    assert [f.raw for f in frames] == [TOT]
    assert errors == [("bad_lrc", "ETX before FB: no LRC"), ("bad_lrc", "FB without an LRC word")]


def test_broken_tail() -> None:
    frames, errors, _ = feed(TXN[:-2] + b"\xf6" + TOT)  # FB followed by a control word
    assert errors == [("bad_message", "FB followed by F6, not an LRC word")]
    frames2, errors2, _ = feed(TXN[:-1] + b"\xe1" + TOT)  # LRC word, then no ETX
    assert errors2 == [("bad_message", "LRC word followed by E1, not ETX")]
    assert [f.raw for f in frames] == [f.raw for f in frames2] == [TOT]


def test_lost_etx_is_truncated_at_the_length_limit() -> None:
    endless = b"\xff\xf6" + b"\xe1" * (MAX_FRAME_LEN - 2)
    frames, errors, decoder = feed(endless[:-1])
    assert (frames, errors, decoder.buffered) == ([], [], MAX_FRAME_LEN - 1)
    frames, errors, decoder = feed(endless[:-1], endless[-1:] + b"\xe1" + TXN)
    assert [f.raw for f in frames] == [TXN]
    assert errors == [("truncated", f"no FB within {MAX_FRAME_LEN} bytes")]


def test_flush_reports_the_incomplete_frame() -> None:
    _, errors, decoder = feed(b"\x91" + TXN[:7])
    assert kinds(errors) == ["garbage"] and decoder.buffered == 7
    flushed = decoder.flush()
    assert flushed == [ProtocolError("truncated", "incomplete frame of 7 bytes dropped")]
    assert decoder.buffered == 0 and decoder.flush() == []
    assert decoder.receive_data(TXN[:5]) == [] and decoder.reset() == 5 and decoder.buffered == 0


def test_longest_frame_fits() -> None:
    grades = tuple(GradeTotals(g, 10**8 - 1, 10**8 - 1) for g in range(10))
    wire = encode_frame(totals_body(TotalsData(grades)))
    assert len(wire) == MAX_FRAME_LEN
    frames, errors, _ = feed(wire)
    assert [f.raw for f in frames] == [wire] and errors == []


@given(st.lists(st.sampled_from([TXN, TOT, BAD_LRC, b"\x91", b"\xe5\xf6"]), max_size=8), st.data())
def test_frames_do_not_depend_on_how_bytes_are_split(
    parts: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole, _, _ = feed(stream)
    split, _, _ = feed(*chunks)
    assert [f.raw for f in split] == [f.raw for f in whole]
    assert [f.raw for f in whole] == [p for p in parts if p in (TXN, TOT)]


@settings(max_examples=1000)
@given(st.lists(st.binary(max_size=3 * MAX_FRAME_LEN), max_size=4))
def test_random_bytes_never_raise_and_only_checked_frames_come_out(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        for item in decoder.receive_data(chunk):
            if isinstance(item, Frame):
                assert encode_frame(item.body) == item.raw  # LRC and words verified
        assert decoder.buffered < MAX_BUFFER
    decoder.flush()
    assert decoder.buffered == 0
