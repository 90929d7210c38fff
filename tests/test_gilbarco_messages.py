"""Gilbarco codes, words, LRC and the two data layouts (protocols.md §4)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.events import ProtocolError, Sale
from protocols.gilbarco.codes import (
    COMMAND_NAMES,
    STATUS_NAMES,
    command_byte,
    nibble_pump,
    pump_nibble,
    status_byte,
)
from protocols.gilbarco.framer import Frame, decode, encode_frame
from protocols.gilbarco.messages import (
    Decimals,
    GradeTotals,
    TotalsData,
    TransactionData,
    digit_words,
    is_digit_word,
    lrc,
    parse_totals,
    parse_transaction,
    sale_key,
    sale_of,
    scaled,
    totals_body,
    transaction_body,
    words_value,
)

#: Grade 1, price 7.85, volume 20.00, money 157.00 (digits least significant first).
EXAMPLE = TransactionData(grade=1, price=785, volume=2000, money=15700)
EXAMPLE_WIRE = bytes.fromhex(
    "FF"  # STX
    "F6 E1"  # grade 1
    "F7 E5 E8 E7 E0"  # price 0785
    "F9 E0 E0 E0 E2 E0 E0"  # volume 002000
    "FA E0 E0 E7 E5 E1 E0"  # money 015700
    "FB E2"  # LRC 2 (below)
    "F0"  # ETX
)
# LRC by hand: low nibbles from FF through FB, the LRC word and F0 not included:
#   FF 15 + F6 6 + E1 1 + F7 7 + (5+8+7+0)=20 + F9 9 + (0+0+0+2+0+0)=2
#   + FA 10 + (0+0+7+5+1+0)=13 + FB 11 = 94;  94 mod 16 = 14;  -14 mod 16 = 2 → E2.
#   Check: 94 + 2 = 96 = 6 × 16.

TOTALS = TotalsData(
    (GradeTotals(grade=1, volume=10_002_000, money=80_000_000), GradeTotals(2, 5, 99_999_999))
)

transactions = st.builds(
    TransactionData,
    grade=st.integers(0, 9),
    price=st.integers(0, 9999),
    volume=st.integers(0, 999_999),
    money=st.integers(0, 999_999),
)
grade_totals = st.builds(
    GradeTotals,
    grade=st.integers(0, 9),
    volume=st.integers(0, 10**8 - 1),
    money=st.integers(0, 10**8 - 1),
)
totals = st.lists(grade_totals, min_size=1, max_size=10, unique_by=lambda g: g.grade).map(
    lambda gs: TotalsData(tuple(gs))
)


# ---------------------------------------------------------------- one-byte codes


def test_pump_nibbles_16_is_0() -> None:
    assert [pump_nibble(p) for p in range(1, 17)] == [*range(1, 16), 0]
    assert [nibble_pump(n) for n in range(16)] == [16, *range(1, 16)]
    for bad in (0, 17, -1):
        with pytest.raises(ValueError):
            pump_nibble(bad)


def test_command_and_status_bytes() -> None:
    assert command_byte(0x0, 1) == 0x01
    assert command_byte(0x4, 16) == 0x40
    assert command_byte(0x5, 15) == 0x5F
    assert status_byte(0x9, 3) == 0x93
    assert status_byte(0xA, 16) == 0xA0
    with pytest.raises(ValueError):
        command_byte(0x10, 1)
    with pytest.raises(ValueError):
        status_byte(-1, 1)
    assert set(STATUS_NAMES) == {6, 7, 8, 9, 0xA, 0xB, 0xC}
    assert set(COMMAND_NAMES) == {0, 1, 2, 3, 4, 5}


# ---------------------------------------------------------------- words and LRC


def test_digit_words_least_significant_first() -> None:
    assert digit_words(2000, 6) == bytes.fromhex("E0 E0 E0 E2 E0 E0")
    assert digit_words(785, 4) == bytes.fromhex("E5 E8 E7 E0")
    assert digit_words(0, 1) == b"\xe0"
    assert words_value(bytes.fromhex("E5 E8 E7 E0")) == 785
    assert words_value(b"") == 0
    assert words_value(bytes.fromhex("E5 EA")) is None  # EA is no digit
    assert words_value(bytes.fromhex("E5 F5")) is None
    with pytest.raises(ValueError):
        digit_words(10_000, 4)
    with pytest.raises(ValueError):
        digit_words(-1, 4)


@given(st.integers(0, 10**8 - 1), st.integers(8, 12))
def test_digit_round_trip(value: int, count: int) -> None:
    words = digit_words(value, count)
    assert len(words) == count and all(is_digit_word(w) for w in words)
    assert words_value(words) == value


def test_lrc_hand_computed_example() -> None:
    body = EXAMPLE_WIRE[1:-3]
    assert lrc(body) == 2
    assert encode_frame(transaction_body(EXAMPLE)) == EXAMPLE_WIRE
    assert decode(EXAMPLE_WIRE) == (Frame(body=body, raw=EXAMPLE_WIRE), len(EXAMPLE_WIRE))
    # LRC values above 9 travel as EA..EF: FF F6 E0 FB → 15+6+0+11 = 32 → 0; F6 E5 → 11 → EB.
    assert encode_frame(bytes.fromhex("F6 E0")) == bytes.fromhex("FF F6 E0 FB E0 F0")
    assert encode_frame(bytes.fromhex("F6 E5")) == bytes.fromhex("FF F6 E5 FB EB F0")
    assert encode_frame(b"") == bytes.fromhex("FF FB E6 F0")  # 15 + 11 = 26 → 6


# Every 0xF_ word: how a frame with it in a field position decodes.
CONTROL_OUTCOMES = {
    0xF0: "bad_lrc",  # ETX before FB: no LRC
    **dict.fromkeys((0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xFC), "bad_message"),  # not control words
    **dict.fromkeys((0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFD, 0xFE), "frame"),  # field controls
    0xFB: "frame",  # the LRC control word itself (the frame ends there)
    0xFF: "truncated",  # STX: a new frame starts
}


@pytest.mark.parametrize("control", sorted(CONTROL_OUTCOMES))
def test_every_control_word(control: int) -> None:
    if control == 0xFB:
        wire = encode_frame(b"")
    elif CONTROL_OUTCOMES[control] == "frame":
        wire = encode_frame(bytes([control, 0xE3, 0xE9]))
    else:
        wire = bytes([0xFF, 0xF6, 0xE1, control, 0xE3]) + bytes.fromhex("FB E0 F0")
    result, consumed = decode(wire)
    if CONTROL_OUTCOMES[control] == "frame":
        assert isinstance(result, Frame) and consumed == len(wire)
        assert result.body == wire[1:-3] and result.raw == wire
    else:
        assert isinstance(result, ProtocolError)
        assert result.kind == CONTROL_OUTCOMES[control]


def test_encode_frame_refuses_non_words() -> None:
    for body in (b"\xe1", b"\xf6\xfb", b"\xf6\xea", b"\xf6\x31", b"\xff"):
        with pytest.raises(ValueError):
            encode_frame(body)


# ---------------------------------------------------------------- layouts


def test_transaction_layout() -> None:
    assert parse_transaction(EXAMPLE_WIRE[1:-3]) == EXAMPLE


def test_totals_layout() -> None:
    body = totals_body(TOTALS)
    assert body == bytes.fromhex(
        "F6 E1 F9 E0 E0 E0 E2 E0 E0 E0 E1 FA E0 E0 E0 E0 E0 E0 E0 E8"
        "F6 E2 F9 E5 E0 E0 E0 E0 E0 E0 E0 FA E9 E9 E9 E9 E9 E9 E9 E9"
    )
    assert parse_totals(body) == TOTALS
    assert TOTALS.of(2) == GradeTotals(2, 5, 99_999_999) and TOTALS.of(3) is None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("F6 E1 F7 E5 E8 E7 F9 E0 E0 E0 E2 E0 E0 FA E0 E0 E7 E5 E1 E0", "not a transaction"),
        ("F6 E1 F7 E5 E8 E7 E0 F9 E0 E0 E0 E2 E0 E0 FA E0 E0 E7 E5 E1 E0 F8 E1", "not a trans"),
        ("F7 E5 E8 E7 E0 F6 E1 F9 E0 E0 E0 E2 E0 E0 FA E0 E0 E7 E5 E1 E0", "not a transaction"),
        ("F6 E1 F7 E5 E8 E7 EA F9 E0 E0 E0 E2 E0 E0 FA E0 E0 E7 E5 E1 E0", "above 9"),
        ("", "not a transaction"),
        # One money digit short: compiled Bytes(n) would accept it (found by the fuzz test).
        ("F6 E1 F7 E0 E0 E0 E0 F9 E0 E0 E0 E0 E0 E0 FA E1 E0 E0 E0 E0", "not a transaction"),
    ],
)
def test_transaction_layout_errors(body: str, detail: str) -> None:
    result = parse_transaction(bytes.fromhex(body))
    assert isinstance(result, ProtocolError) and result.kind == "bad_message"
    assert detail in result.detail


def test_totals_layout_errors() -> None:
    one = totals_body(TotalsData((GradeTotals(1, 5, 6),)))
    for body, detail in [
        (b"", "without any grade"),
        (one + one, "a grade twice"),
        (one[:-1], "not a totals layout"),  # one money digit short
        (one + one[:-1], "not a totals layout"),
        (one + b"\xf8\xe1", "not a totals layout"),
        (transaction_body(EXAMPLE), "not a totals layout"),
    ]:
        result = parse_totals(body)
        assert isinstance(result, ProtocolError) and result.kind == "bad_message"
        assert detail in result.detail, (body.hex(), result.detail)


@given(transactions)
def test_transaction_round_trip(data: TransactionData) -> None:
    wire = encode_frame(transaction_body(data))
    frame, consumed = decode(wire)
    assert isinstance(frame, Frame) and consumed == len(wire) == 25
    assert parse_transaction(frame.body) == data
    assert isinstance(parse_totals(frame.body), ProtocolError)


@given(totals)
def test_totals_round_trip(data: TotalsData) -> None:
    wire = encode_frame(totals_body(data))
    frame, consumed = decode(wire)
    assert isinstance(frame, Frame) and consumed == len(wire) == 4 + 20 * len(data.grades)
    assert parse_totals(frame.body) == data
    assert isinstance(parse_transaction(frame.body), ProtocolError)


# ---------------------------------------------------------------- sale


def test_sale_of_scales_and_keys() -> None:
    ended = datetime(2026, 3, 4, 5, 6, 7)
    grade = TOTALS.grades[0]
    assert sale_key(EXAMPLE, grade) == "1:10002000"
    assert sale_of(7, EXAMPLE, grade, ended, Decimals(), b"raw") == Sale(
        address=7,
        nozzle=1,
        order_no="10002000",
        ended_at=ended,
        grade="1",
        price=Decimal("7.85"),
        volume=Decimal("20.00"),
        amount=Decimal("157.00"),
        totalizer_volume_end=Decimal("100020.00"),
        totalizer_amount_end=Decimal("800000.00"),
        key="1:10002000",
        raw=b"raw",
    )
    sale = sale_of(7, EXAMPLE, GradeTotals(1, 5, 6), ended, Decimals(volume=3, money=0, price=3))
    assert (sale.volume, sale.amount, sale.price) == (
        Decimal("2.000"),
        Decimal(15700),
        Decimal("0.785"),
    )
    assert (sale.order_no, sale.totalizer_volume_end) == ("00000005", Decimal("0.005"))
    assert str(scaled(0, 2)) == "0.00"
    with pytest.raises(ValueError):
        Decimals(volume=4)
