"""Gilbarco words, LRC and layouts: frames written from the sources, round trips.

External frames (written here byte by byte, never produced by our code):

- ``CAPTURED_TXN``: a transaction reply captured from a Gilbarco SK700-II
  and published in a public two-wire decoder script (the search index holds
  it without its repository's name; docs/protocols/gilbarco.md, "Sources").
  Its LRC checks; a second frame published beside it does not
  (``CAPTURED_BAD``: two digits short, see the test).
- Frames laid out word by word from the open FCC's driver,
  ``fangym0335/first src/lischn001.c`` (offsets cited per word), and its
  literal special-function frame (lischn001.c:2117).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import ProtocolError
from protocols.gilbarco.codes import command_byte, nibble_pump, pump_nibble, status_byte
from protocols.gilbarco.framer import Frame, decode
from protocols.gilbarco.messages import (
    Decimals,
    GradeTotals,
    SaleParts,
    TotalsData,
    TransactionData,
    digit_words,
    encode_frame,
    lrc,
    parse_totals,
    parse_transaction,
    sale_of,
    split_fields,
    totals_body,
    transaction_body,
    words_value,
)

CAPTURED_TXN = bytes.fromhex(
    "FF F1 F8 EB E1 E0 E0 E2 F6 E2 F4 F7 E0 E7 E0 E1"
    " F9 E0 E6 E3 E3 E2 E0 FA E0 E0 E0 E5 E2 E0 FB EC F0"
)
CAPTURED_BAD = bytes.fromhex(
    "FF F1 F8 EB E3 E0 E0 E2 F6 E0 F4 F7 E0 E5 E1 E8 F9 E0 E7 E2 E1 E0 FA E0 E0 E0 E0 E1 FB EE F0"
)

# A transaction reply as lischn001.c reads it (GetTransData, 1701-1757): 33
# words (1711), F0 last (1729), LRC over all but the last two (1735-1736),
# pump − 1 at [4] (1742-1746), grade − 1 at [9] (1750), price [12..15]
# (1522-1523), volume [17..22] (lischn022.c:1463-1465; lischn001.c:1505-1507
# drops [17]), money [24..29] (1512-1514); control words as §4. Pump 3,
# grade 2, 7.85, 20.00 L, 157.00 — digits least significant first.
FCC_TXN = bytes(
    [
        0xFF, 0xF1, 0xF8,  # [0] STX, [1] header, [2] pump data next
        0xE0, 0xE2, 0xE0, 0xE0, 0xE0,  # [3..7]: [4] = pump 3 − 1
        0xF6, 0xE1,  # [8] grade next, [9] = grade 2 − 1
        0xF4,  # [10] price level 1
        0xF7, 0xE5, 0xE8, 0xE7, 0xE0,  # [11] price next, [12..15] = 0785
        0xF9, 0xE0, 0xE0, 0xE0, 0xE2, 0xE0, 0xE0,  # [16], [17..22] = 002000
        0xFA, 0xE0, 0xE0, 0xE7, 0xE5, 0xE1, 0xE0,  # [23], [24..29] = 015700
        0xFB, 0xE3, 0xF0,  # [30] LRC next, [31] LRC (lrc.c:58), [32] ETX
    ]
)  # fmt: skip

# A totals reply as lischn001.c reads it (GetPumpTotal 1585-1637, GetGunTotal
# 1639-1669, GetGunPrice 1689): 30 words per grade after FF (1595, 1652),
# grade − 1 at p[1] (1656), volume p[3..10], money p[12..19] (1657-1658),
# price level 1 p[21..24] (1689), level 2 p[26..29] (§4). Two grades.
FCC_TOTALS = bytes(
    [
        0xFF,
        *(0xF6, 0xE0),  # grade 1
        *(0xF9, 0xE8, 0xE7, 0xE6, 0xE5, 0xE4, 0xE3, 0xE2, 0xE1),  # 12345678
        *(0xFA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8),  # 87654321
        *(0xF4, 0xE5, 0xE8, 0xE7, 0xE0),  # 0785
        *(0xF5, 0xE0, 0xE9, 0xE7, 0xE0),  # 0790
        *(0xF6, 0xE1),  # grade 2
        *(0xF9, 0xE0, 0xE0, 0xE0, 0xE0, 0xE0, 0xE0, 0xE1, 0xE0),  # 01000000
        *(0xFA, 0xE0, 0xE0, 0xE0, 0xE0, 0xE0, 0xE0, 0xE0, 0xE8),  # 80000000
        *(0xF4, 0xE6, 0xE3, 0xE8, 0xE0),  # 0836
        *(0xF5, 0xE6, 0xE3, 0xE8, 0xE0),  # 0836
        *(0xFB, 0xEA, 0xF0),  # LRC: −(Σ bytes) mod 16 = A (lrc.c:58)
    ]
)

# The FCC's special-function request, a master's frame, literally
# (lischn001.c:2117): data word right after FF, LRC EE.
FCC_SFC = bytes([0xFF, 0xE9, 0xFE, 0xE0, 0xE1, 0xE0, 0xFB, 0xEE, 0xF0])

WHEN = datetime(2026, 5, 1, 12, 0)


def frame(wire: bytes) -> Frame:
    result, taken = decode(wire)
    assert isinstance(result, Frame) and taken == len(wire), result
    return result


# ---------------------------------------------------------------- bytes and words


def test_pump_nibbles_16_is_0() -> None:
    """§4; lischn001.c:173 sends ``phyfp % 16``."""
    assert [pump_nibble(p) for p in (1, 15, 16)] == [1, 15, 0]
    assert [nibble_pump(n) for n in (1, 15, 0)] == [1, 15, 16]
    for bad in (0, 17):
        with pytest.raises(ValueError):
            pump_nibble(bad)


def test_command_and_status_bytes() -> None:
    """lischn001.c:2030 ``0x00 | pump``, 1709 ``0x40 | pump``, 1593 ``0x50 |``,
    1884 ``0x60 |``; a status is ``cmd[0] >> 4`` with the pump in the low
    nibble (2051-2056)."""
    assert [command_byte(c, 3) for c in (0, 4, 5, 6)] == [0x03, 0x43, 0x53, 0x63]
    assert command_byte(4, 16) == 0x40
    assert status_byte(0xA, 16) == 0xA0 and status_byte(6, 2) == 0x62
    with pytest.raises(ValueError):
        command_byte(16, 1)


def test_digit_words_least_significant_first() -> None:
    assert digit_words(785, 4) == bytes([0xE5, 0xE8, 0xE7, 0xE0])
    assert words_value(bytes([0xE5, 0xE8, 0xE7, 0xE0])) == 785
    assert words_value(b"\xe5\xea") is None  # a data word above 9 is not a digit
    assert words_value(b"") is None
    with pytest.raises(ValueError):
        digit_words(10_000, 4)


def test_lrc_by_hand() -> None:
    """§4: −(Σ low nibbles FF..FB) mod 16; lrc.c:58 sums whole bytes, the same nibble."""
    body = CAPTURED_TXN[1:-3]
    nibble_sum = 0xF + sum(b & 0xF for b in body) + 0xB
    assert -nibble_sum % 16 == 0xC == lrc(body) == CAPTURED_TXN[-2] & 0xF
    byte_sum = sum(CAPTURED_TXN[:-2])  # lischn001.c:1735: LRC(cmd, cmdlen − 2)
    assert (-byte_sum) & 0xF == 0xC


# ---------------------------------------------------------------- external frames


def test_the_captured_transaction_decodes_to_its_values() -> None:
    body = frame(CAPTURED_TXN).body
    assert [c for c, _ in split_fields(body)] == [0xF1, 0xF8, 0xF6, 0xF4, 0xF7, 0xF9, 0xFA]
    txn = parse_transaction(body)
    assert txn == TransactionData(
        pump=2,  # E1: pump − 1
        grade=3,  # E2: grade − 1
        price=1070,
        volume=23_360,
        money=25_000,
        level=1,
        header=bytes([0xB, 0x0, 0x0, 0x2]),  # EB E0 E0 E2 around the pump word
        digits=(4, 6, 6),
    )
    # Three volume decimals fit it: 23.360 L × 10.70 = 249.95 ≈ 250.00 (a preset).
    sale = sale_of(2, SaleParts(txn, GradeTotals(3, 1, 2)), WHEN, Decimals(volume=3))
    assert (sale.price, sale.volume, sale.amount) == (
        Decimal("10.70"),
        Decimal("23.360"),
        Decimal("250.00"),
    )
    assert encode_frame(transaction_body(txn)) == CAPTURED_TXN  # rebuilt word for word


def test_the_second_published_frame_fails_its_lrc() -> None:
    """31 words: the volume and money fields hold 5 digits each where the
    first frame has 6 — two words lost in capture; the LRC says so."""
    result, taken = decode(CAPTURED_BAD)
    assert isinstance(result, ProtocolError) and result.kind == "bad_lrc"
    assert taken == len(CAPTURED_BAD) and result.detail == "LRC E, computed 0"


def test_a_transaction_laid_out_from_the_fcc_driver() -> None:
    assert len(FCC_TXN) == 33
    txn = parse_transaction(frame(FCC_TXN).body)
    assert isinstance(txn, TransactionData)
    assert (txn.pump, txn.grade, txn.price, txn.volume, txn.money) == (3, 2, 785, 2000, 15_700)
    sale = sale_of(3, SaleParts(txn, GradeTotals(2, 1_000_000, 80_000_000)), WHEN, Decimals())
    assert (sale.nozzle, sale.grade, sale.price, sale.volume, sale.amount) == (
        2,
        "2",
        Decimal("7.85"),
        Decimal("20.00"),
        Decimal("157.00"),
    )
    assert sale.order_no == "01000000" and sale.key == "2:01000000"


def test_totals_laid_out_from_the_fcc_driver() -> None:
    assert len(FCC_TOTALS) == 2 * 30 + 4  # lischn001.c:1595
    totals = parse_totals(frame(FCC_TOTALS).body)
    assert totals == TotalsData(
        (
            GradeTotals(1, 12_345_678, 87_654_321, 785, 790),
            GradeTotals(2, 1_000_000, 80_000_000, 836, 836),
        )
    )
    assert encode_frame(totals_body(totals)) == FCC_TOTALS


def test_the_fccs_special_function_frame_checks() -> None:
    """A master's frame: a data word right after FF, no message layout of ours."""
    body = frame(FCC_SFC).body
    assert split_fields(body) == [(0, b"\xe9"), (0xFE, b"\xe0\xe1\xe0")]
    assert isinstance(parse_transaction(body), ProtocolError)
    assert isinstance(parse_totals(body), ProtocolError)


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda b: b.replace(b"\xf1", b""), "not a transaction layout"),
        (lambda b: b.replace(b"\xf4", b"\xf3"), "not a transaction layout"),
        (lambda b: b.replace(b"\xf8\xeb\xe1\xe0\xe0\xe2", b"\xf8\xeb"), "pump data of 1 words"),
        (lambda b: b.replace(b"\xf7\xe0", b"\xf7\xea"), "not digits"),
        (lambda b: b.replace(b"\xf9\xe0\xe6\xe3\xe3\xe2\xe0", b"\xf9"), "not digits"),
    ],
)
def test_transaction_layout_errors(mutate: Callable[[bytes], bytes], detail: str) -> None:
    body = frame(CAPTURED_TXN).body
    result = parse_transaction(mutate(body))
    assert isinstance(result, ProtocolError) and result.kind == "bad_message"
    assert detail in result.detail


def test_any_digit_count_and_either_price_level() -> None:
    """§4: take the digits between two control words, never a fixed width."""
    txn = TransactionData(16, 10, 12_345, 7, 1_234_567_890, level=2, digits=(5, 1, 10))
    body = transaction_body(txn)
    assert parse_transaction(body) == txn
    assert parse_transaction(body.replace(b"\xf5", b"")) == TransactionData(
        16, 10, 12_345, 7, 1_234_567_890, level=0, digits=(5, 1, 10)
    )
    short = GradeTotals(1, 123, 45, None, 9, digits=(3, 2, 1))
    assert parse_totals(totals_body(TotalsData((short,)))) == TotalsData((short,))


def test_totals_layout_errors() -> None:
    one = totals_body(TotalsData((GradeTotals(1, 1, 2),)))
    two = totals_body(TotalsData((GradeTotals(2, 10, 2),)))
    for body, detail in (
        (b"", "not a totals layout"),
        (one.replace(b"\xfa", b"\xf7"), "not a totals layout"),
        (one + one, "totals name a grade twice"),
        (one.replace(b"\xfa", b"\xf9"), "names F9 twice"),
        (one[:2] + one[11:], "without F9 and FA"),
        (one.replace(b"\xf9\xe1", b"\xf9\xeb"), "not digits"),
        # an E0 dropped inside grade 2's volume: the LRC does not see it
        (one + two.replace(b"\xf9\xe0\xe1", b"\xf9\xe1"), "differ in digit counts"),
    ):
        result = parse_totals(body)
        assert isinstance(result, ProtocolError) and detail in result.detail, (body, result)


def test_encode_frame_refuses_framing_bytes() -> None:
    for bad in (0xFF, 0xFB, 0xF0, 0x61):
        with pytest.raises(ValueError):
            encode_frame(bytes([0xF6, bad]))


def test_decimals_are_bounded() -> None:
    with pytest.raises(ValueError):
        Decimals(volume_total=5)


# ---------------------------------------------------------------- round trips

digits = st.integers(1, 12)


@st.composite
def transactions(draw: st.DrawFn) -> TransactionData:
    counts = (draw(digits), draw(digits), draw(digits))
    return TransactionData(
        pump=draw(st.integers(1, 16)),
        grade=draw(st.integers(1, 10)),
        price=draw(st.integers(0, 10 ** counts[0] - 1)),
        volume=draw(st.integers(0, 10 ** counts[1] - 1)),
        money=draw(st.integers(0, 10 ** counts[2] - 1)),
        level=draw(st.sampled_from((0, 1, 2))),
        header=bytes(draw(st.lists(st.integers(0, 15), min_size=1, max_size=6))),
        digits=counts,
    )


@st.composite
def grade_totals(draw: st.DrawFn, grade: int, widths: tuple[int, int]) -> GradeTotals:
    counts = (*widths, draw(digits))
    price = st.none() | st.integers(0, 10 ** counts[2] - 1)
    p1, p2 = draw(price), draw(price)
    if p1 is None and p2 is None:
        counts = (*counts[:2], 4)  # no price: the default width is what parses back
    return GradeTotals(
        grade,
        draw(st.integers(0, 10 ** counts[0] - 1)),
        draw(st.integers(0, 10 ** counts[1] - 1)),
        p1,
        p2,
        counts,
    )


#: A pump writes every grade's totalizers with the same digit counts.
totals = st.tuples(
    st.lists(st.integers(1, 10), min_size=1, max_size=10, unique=True), st.tuples(digits, digits)
).flatmap(lambda drawn: st.tuples(*(grade_totals(g, drawn[1]) for g in drawn[0])).map(TotalsData))


@settings(max_examples=300, deadline=None)
@given(transactions())
def test_transaction_build_parse_round_trip(txn: TransactionData) -> None:
    wire = encode_frame(transaction_body(txn))
    assert parse_transaction(frame(wire).body) == txn


@settings(max_examples=300, deadline=None)
@given(totals)
def test_totals_build_parse_round_trip(data: TotalsData) -> None:
    wire = encode_frame(totals_body(data))
    assert parse_totals(frame(wire).body) == data
