"""The Gilbarco frame decoder: every recovery case of protocols/gilbarco/framer.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import ProtocolError
from protocols.gilbarco.framer import MAX_FRAME_LEN, Frame, decode, decode_at
from protocols.gilbarco.messages import encode_frame, lrc
from tests.test_gilbarco_messages import CAPTURED_TXN, FCC_SFC, FCC_TOTALS


def error(wire: bytes) -> tuple[str, str, int]:
    result, taken = decode(wire)
    assert isinstance(result, ProtocolError), result
    return result.kind, result.detail, taken


def test_good_frames_and_what_they_take() -> None:
    for wire in (CAPTURED_TXN, FCC_TOTALS, FCC_SFC):
        result, taken = decode(wire + b"\x01\x61")
        assert isinstance(result, Frame) and taken == len(wire)
        assert result.raw == wire and result.lrc == wire[-2] & 0xF
    result, taken = decode_at(b"\x00\x00" + CAPTURED_TXN, 2)
    assert isinstance(result, Frame) and taken == len(CAPTURED_TXN)


def test_incomplete_needs_more_at_every_cut() -> None:
    for cut in range(1, len(CAPTURED_TXN)):
        assert decode(CAPTURED_TXN[:cut]) == (None, 0)


def test_a_byte_below_e0_is_left_to_the_caller() -> None:
    """On the loop such a byte is the next command or a status: the frame
    stops before it, the byte is not taken."""
    cut = CAPTURED_TXN[:9] + b"\x02"
    assert error(cut) == ("bad_message", "unexpected byte 02 at frame offset 9", 9)
    assert error(b"\xff\x61") == ("bad_message", "unexpected byte 61 at frame offset 1", 1)


def test_a_new_ff_cuts_the_frame() -> None:
    assert error(CAPTURED_TXN[:12] + CAPTURED_TXN) == (
        "truncated",
        "frame cut by FF after 12 bytes",
        12,
    )
    assert error(CAPTURED_TXN[:-2] + b"\xff")[::2] == ("truncated", len(CAPTURED_TXN) - 2)
    assert error(CAPTURED_TXN[:-1] + b"\xff")[::2] == ("truncated", len(CAPTURED_TXN) - 1)


def test_lrc_and_tail_errors() -> None:
    body = CAPTURED_TXN[1:-3]
    assert error(b"\xff" + body + b"\xf0") == ("bad_lrc", "F0 before FB: no LRC", len(body) + 2)
    assert error(b"\xff" + body + b"\xfb\xf0") == (
        "bad_lrc",
        "FB without an LRC word",
        len(body) + 3,
    )
    assert error(b"\xff" + body + b"\xfb\xf6")[:2] == (
        "bad_message",
        "FB followed by F6, not an LRC word",
    )
    assert error(b"\xff" + body + b"\xfb\xec\xe0")[:2] == (
        "bad_message",
        "LRC word followed by E0, not F0",
    )
    assert error(b"\xff" + body + b"\xfb\xec\x01") == (
        "bad_message",
        "LRC word followed by 01, not F0",
        len(body) + 3,
    )
    wrong = CAPTURED_TXN[:-2] + b"\xed\xf0"
    assert error(wrong) == ("bad_lrc", "LRC D, computed C", len(wrong))


@pytest.mark.parametrize("position", range(1, len(CAPTURED_TXN) - 3))
def test_any_one_nibble_changed_inside_fails_the_lrc(position: int) -> None:
    """One nibble changed always changes the sum mod 16 (§4's LRC)."""
    word = CAPTURED_TXN[position]
    other = word ^ 0x01 if word not in (0xFA, 0xFE) else word ^ 0x04
    if other in (0xFB, 0xF0, 0xFF):
        other = word ^ 0x02
    mutated = CAPTURED_TXN[:position] + bytes([other]) + CAPTURED_TXN[position + 1 :]
    assert error(mutated)[0] == "bad_lrc"


def test_a_lost_end_is_truncated_at_the_limit() -> None:
    run = b"\xff" + b"\xe1" * (MAX_FRAME_LEN + 5)
    assert decode(run[: MAX_FRAME_LEN - 1]) == (None, 0)
    assert error(run)[::2] == ("truncated", MAX_FRAME_LEN)


def test_the_longest_reply_fits() -> None:
    """Ten grades of 30 words plus some room (framer.MAX_FRAME_LEN)."""
    body = (
        b"\xf6\xe0\xf9"
        + b"\xe1" * 8
        + b"\xfa"
        + b"\xe2" * 8
        + b"\xf4"
        + b"\xe3" * 4
        + b"\xf5"
        + b"\xe4" * 4
    ) * 10
    result, taken = decode(encode_frame(body))
    assert isinstance(result, Frame) and taken == len(body) + 4 and result.lrc == lrc(body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_never_raise_and_frames_out_check(data: bytes) -> None:
    data = b"\xff" + data
    result, taken = decode(data)
    assert 0 <= taken <= len(data)
    if isinstance(result, Frame):
        assert result.raw == data[:taken] and result.raw[-2] & 0xF == lrc(result.body)
    elif result is None:
        assert taken == 0
    else:
        assert taken > 0
