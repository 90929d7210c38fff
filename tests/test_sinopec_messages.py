"""Sinopec messages (protocols.md §2): 30 poll, 31 real-time, 32 record, 3C confirmation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.events import NozzleState, NozzleStatus, ProtocolError, Sale
from protocols.sinopec.messages import (
    RECORD_LEN,
    ST_CARD,
    ST_IDLE,
    ST_NOZZLE,
    RealtimeEntry,
    TransactionRecord,
    build_confirm,
    build_poll,
    build_realtime,
    build_record,
    hundredths,
    parse_confirm,
    parse_realtime,
    parse_record,
    realtime_events,
    sale_event,
)

RECORD = TransactionRecord(
    pos_ttc=0x0001E240,  # 123456
    time=datetime(2026, 11, 22, 8, 15, 2),
    nzn=2,
    g_code="1092",
    vol=3012,
    prc=785,
    amn=23644,
    v_tot=10_003_012,
    t_type=0x01,
    asn=bytes.fromhex("10000000000000012345"),
    bal=500_000,
    ctc=7,
    tac=b"TAC!",
    gmac=b"GMAC",
    psam_tac=b"PTAC",
    psam_asn=bytes(range(10)),
    psam_tid=b"TID123",
    psam_ttc=99,
    ds=1,
    unit=0,
    c_type=2,
    ver=3,
    emp=4,
    rfu=bytes(11),
    t_mac=b"\xfa\xfa\x00\x01",
)

# The same record assembled field by field in the order of protocols.md §2.
RECORD_WIRE = b"".join(
    [
        b"\x32",
        (123456).to_bytes(4, "big"),  # POS_TTC
        b"\x01",  # T_TYPE
        bytes.fromhex("20261122081502"),  # TIME, BCD
        bytes.fromhex("10000000000000012345"),  # ASN
        (500_000).to_bytes(4, "big"),  # BAL
        (23644).to_bytes(3, "big"),  # AMN
        (7).to_bytes(2, "big"),  # CTC
        b"TAC!",
        b"GMAC",
        b"PTAC",  # PSAM_TAC
        bytes(range(10)),  # PSAM_ASN
        b"TID123",  # PSAM_TID
        (99).to_bytes(4, "big"),  # PSAM_TTC
        b"\x01\x00\x02\x03",  # DS, UNIT, C_TYPE, VER
        b"\x02",  # NZN
        b"\x10\x92",  # G_CODE
        (3012).to_bytes(3, "big"),  # VOL
        (785).to_bytes(2, "big"),  # PRC
        b"\x04",  # EMP
        (10_003_012).to_bytes(4, "big"),  # V_TOT
        bytes(11),  # RFU
        b"\xfa\xfa\x00\x01",  # T_MAC
    ]
)


def test_poll_and_confirm() -> None:
    assert build_poll() == b"\x30"
    assert build_confirm(123456) == b"\x3c\x00\x01\xe2\x40"
    assert parse_confirm(b"\x3c\x00\x01\xe2\x40") == 123456
    assert isinstance(parse_confirm(RECORD_WIRE), ProtocolError)
    # The old 32-shaped confirmation is no confirmation any more (3C, our layout).
    assert isinstance(parse_confirm(b"\x32\x00\x01\xe2\x40"), ProtocolError)
    assert isinstance(parse_confirm(b"\x3c\x00\x01\xe2"), ProtocolError)


@given(st.integers(0, 2**32 - 1))
def test_confirm_round_trip(pos_ttc: int) -> None:
    wire = build_confirm(pos_ttc)
    assert len(wire) == 5 and wire[0] == 0x3C
    assert parse_confirm(wire) == pos_ttc


def test_record_layout_is_the_95_bytes_of_protocols_md() -> None:
    assert len(RECORD_WIRE) == 1 + RECORD_LEN == 96
    assert build_record(RECORD) == RECORD_WIRE
    parsed = parse_record(RECORD_WIRE)
    assert parsed == RECORD
    assert isinstance(parsed, TransactionRecord) and parsed.raw == RECORD_WIRE[1:]


def test_record_to_sale_exact_decimals() -> None:
    sale = sale_event(RECORD_WIRE, address=1)
    assert sale == Sale(
        address=1,
        nozzle=2,
        order_no="123456",
        ended_at=datetime(2026, 11, 22, 8, 15, 2),
        grade="1092",
        price=Decimal("7.85"),
        volume=Decimal("30.12"),
        amount=Decimal("236.44"),
        totalizer_volume_end=Decimal("100030.12"),
        totalizer_amount_end=None,
        key="123456:10003012",
        counter=123456,
        raw=RECORD_WIRE[1:],
    )
    assert isinstance(sale, Sale)
    assert sale.raw == RECORD_WIRE[1:]
    strings = [str(sale.price), str(sale.volume), str(sale.amount), str(sale.totalizer_volume_end)]
    assert strings == ["7.85", "30.12", "236.44", "100030.12"]
    assert sale.ended_at.tzinfo is None


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0.00"), (5, "0.05"), (100, "1.00"), (16_777_215, "167772.15")]
)
def test_hundredths_keep_two_places(value: int, text: str) -> None:
    assert str(hundredths(value)) == text


@pytest.mark.parametrize(
    "time", ["2026112208150A", "20261322081502", "20260230081502", "20261122250000"]
)
def test_bad_time_is_bad_message(time: str) -> None:
    wire = RECORD_WIRE[:6] + bytes.fromhex(time) + RECORD_WIRE[13:]
    assert len(wire) == len(RECORD_WIRE)
    result = sale_event(wire, address=3)
    assert isinstance(result, ProtocolError)
    assert result.kind == "bad_message" and result.address == 3


@pytest.mark.parametrize("wire", [RECORD_WIRE[:-1], RECORD_WIRE + b"\x00", b"\x32"])
def test_record_wrong_length_is_bad_message(wire: bytes) -> None:
    result = parse_record(wire)
    assert isinstance(result, ProtocolError) and result.kind == "bad_message"


records = st.builds(
    TransactionRecord,
    pos_ttc=st.integers(0, 2**32 - 1),
    time=st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    nzn=st.integers(0, 255),
    g_code=st.integers(0, 9999).map(lambda g: f"{g:04d}"),
    vol=st.integers(0, 2**24 - 1),
    prc=st.integers(0, 2**16 - 1),
    amn=st.integers(0, 2**24 - 1),
    v_tot=st.integers(0, 2**32 - 1),
    asn=st.binary(min_size=10, max_size=10),
    rfu=st.binary(min_size=11, max_size=11),
    t_mac=st.binary(min_size=4, max_size=4),
)


@given(records)
def test_record_round_trip(record: TransactionRecord) -> None:
    wire = build_record(record)
    assert len(wire) == 96
    assert parse_record(wire) == record
    sale = sale_event(wire, address=7)
    assert isinstance(sale, Sale)
    assert sale.volume == Decimal(record.vol) / 100 and sale.volume.as_tuple().exponent == -2
    assert sale.price == Decimal(record.prc) / 100 and sale.amount == Decimal(record.amn) / 100
    assert sale.order_no == str(record.pos_ttc) and sale.grade == record.g_code
    assert sale.key == f"{record.pos_ttc}:{record.v_tot}"


def test_realtime_states() -> None:
    entries = [
        RealtimeEntry(ST_IDLE, 1),
        RealtimeEntry(ST_CARD, 2, asn=bytes.fromhex("10000000000000012345"), card_st=1, bal=99),
        RealtimeEntry(ST_NOZZLE, 3, unit=0, amn=0, vol=0, prc=785),
        RealtimeEntry(ST_NOZZLE, 4, unit=0, amn=9, vol=12, prc=752),
    ]
    wire = build_realtime(entries)
    assert wire[:2] == b"\x31\x04"
    assert wire[2:4] == b"\x00\x01"  # ST 0, NZN 1, no body
    assert len(wire) == 2 + 2 + 18 + 11 + 11
    assert wire[-11:] == bytes.fromhex("02 04 00 000009 00000C 02F0")
    assert parse_realtime(wire) == entries
    assert realtime_events(wire, address=5) == [
        NozzleStatus(5, 1, NozzleState.IDLE),
        NozzleStatus(5, 2, NozzleState.IDLE),  # a card in the reader is no nozzle state
        NozzleStatus(5, 3, NozzleState.LIFTED, Decimal("0.00"), Decimal("0.00"), Decimal("7.85")),
        NozzleStatus(5, 4, NozzleState.FUELLING, Decimal("0.12"), Decimal("0.09"), Decimal("7.52")),
    ]


@pytest.mark.parametrize(
    "wire",
    [
        b"\x31\x01\x03\x01",  # unknown ST 3
        b"\x31\x02\x00\x01",  # NUM says 2, one entry
        b"\x31\x01\x00\x01\x00",  # trailing byte
        b"\x31\x01\x02\x01\x00",  # ST 2 body cut short
        b"\x31",
    ],
)
def test_realtime_malformed_is_bad_message(wire: bytes) -> None:
    result = realtime_events(wire, address=1)
    assert isinstance(result, ProtocolError)
    assert result.kind == "bad_message" and result.address == 1


entries = st.one_of(
    st.builds(RealtimeEntry, st.just(ST_IDLE), st.integers(0, 255)),
    st.builds(
        RealtimeEntry,
        st.just(ST_CARD),
        st.integers(0, 255),
        asn=st.binary(min_size=10, max_size=10),
        card_st=st.integers(0, 0xFFFF),
        bal=st.integers(0, 2**32 - 1),
    ),
    st.builds(
        RealtimeEntry,
        st.just(ST_NOZZLE),
        st.integers(0, 255),
        unit=st.integers(0, 255),
        amn=st.integers(0, 2**24 - 1),
        vol=st.integers(0, 2**24 - 1),
        prc=st.integers(0, 0xFFFF),
    ),
)


@given(st.lists(entries, max_size=12))
def test_realtime_round_trip(items: list[RealtimeEntry]) -> None:
    wire = build_realtime(items)
    assert parse_realtime(wire) == items
    statuses = realtime_events(wire, address=1)
    assert isinstance(statuses, list) and len(statuses) == len(items)


def test_non_bcd_grade_code_is_kept_as_its_hex_digits() -> None:
    # G_CODE is BCD (protocols.md §2); a pump that breaks that still has its
    # record stored and confirmed, with the code as it sent it.
    assert RECORD_WIRE[69:71] == b"\x10\x92"  # G_CODE: 1 + 68 bytes in
    wire = RECORD_WIRE[:69] + b"\x1a\x92" + RECORD_WIRE[71:]
    sale = sale_event(wire, address=1)
    assert isinstance(sale, Sale) and sale.grade == "1A92"
