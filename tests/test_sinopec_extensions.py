"""Sinopec 38 totals, 3A read info, 3B error info: our documented layouts, both ways."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.events import COMPONENT_NAMES, DeviceAlarm, Identity, ProtocolError, Totals
from protocols.sinopec.extensions import (
    INFO_TAGS,
    InfoReading,
    TotalsReading,
    alarm_code,
    build_error_query,
    build_errors,
    build_info,
    build_info_query,
    build_totals,
    build_totals_query,
    diff_alarms,
    identity_event,
    parse_errors,
    parse_info,
    parse_query,
    parse_totals,
    totals_event,
)


def test_queries_exact_bytes() -> None:
    assert build_totals_query(2) == b"\x38\x02"
    assert build_info_query(0) == b"\x3a\x00"
    assert build_error_query() == b"\x3b"
    assert parse_query(b"\x38\x02") == (0x38, 2)
    assert parse_query(b"\x3a\x00") == (0x3A, 0)
    assert parse_query(b"\x3b") == (0x3B, 0)
    for bad in (b"\x38", b"\x38\x01\x00", b"\x3b\x00", b"\x30", b"\x3c\x00"):
        assert isinstance(parse_query(bad), ProtocolError), bad


@given(st.sampled_from([0x38, 0x3A]), st.integers(0, 255))
def test_query_round_trip(command: int, nzn: int) -> None:
    wire = build_totals_query(nzn) if command == 0x38 else build_info_query(nzn)
    assert parse_query(wire) == (command, nzn)


def test_totals_exact_bytes_and_event() -> None:
    wire = build_totals(TotalsReading(2, 10_003_012, 80_024_096))
    assert wire == bytes.fromhex("38 02 0098A244 04C51220")
    assert parse_totals(wire) == TotalsReading(2, 10_003_012, 80_024_096)
    assert totals_event(wire, 5) == Totals(5, 2, Decimal("100030.12"), Decimal("800240.96"))
    assert str(Totals(5, 2, Decimal("100030.12"), None).volume) == "100030.12"


@given(st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_totals_round_trip(nzn: int, v_tot: int, a_tot: int) -> None:
    wire = build_totals(TotalsReading(nzn, v_tot, a_tot))
    assert len(wire) == 10
    assert parse_totals(wire) == TotalsReading(nzn, v_tot, a_tot)
    event = totals_event(wire, 1)
    assert isinstance(event, Totals) and event.volume == Decimal(v_tot).scaleb(-2)


@pytest.mark.parametrize("wire", [b"\x38\x01", b"\x38" + bytes(10), b"\x3a" + bytes(9), b""])
def test_totals_malformed(wire: bytes) -> None:
    result = totals_event(wire, 4)
    assert isinstance(result, ProtocolError)
    assert (result.kind, result.address) == ("bad_message", 4)


def test_info_exact_bytes_and_identity() -> None:
    wire = build_info(InfoReading(0, {"mcu_id": "M-1", "mainboard_id": "MB42"}))
    assert wire == b"\x3a\x00\x02" + b"\x02\x04MB42" + b"\x03\x03M-1"
    assert identity_event(wire, 3) == Identity(3, None, {"mainboard_id": "MB42", "mcu_id": "M-1"})
    nozzle = build_info(InfoReading(2, {"nozzle_uid": "0123ABCD"}))
    assert identity_event(nozzle, 3) == Identity(3, 2, {"nozzle_uid": "0123ABCD"})
    assert dict(enumerate(COMPONENT_NAMES, start=1)) == INFO_TAGS


identities = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(st.integers(0, 255), st.dictionaries(st.sampled_from(COMPONENT_NAMES), identities))
def test_info_round_trip(nzn: int, components: dict[str, str]) -> None:
    wire = build_info(InfoReading(nzn, components))
    assert parse_info(wire) == InfoReading(nzn, components)
    event = identity_event(wire, 9)
    assert isinstance(event, Identity)
    assert event.components == components and event.nozzle == (nzn or None)


def test_info_unknown_tag_skipped_repeated_or_binary_refused() -> None:
    unknown = b"\x3a\x01\x02" + b"\x09\x02zz" + b"\x01\x02U1"
    assert identity_event(unknown, 1) == Identity(1, 1, {"nozzle_uid": "U1"})
    for bad in (
        b"\x3a\x01\x02" + b"\x01\x02U1" + b"\x01\x02U2",  # tag 1 twice
        b"\x3a\x01\x01" + b"\x01\x02U\x00",  # not printable
        b"\x3a\x01\x01" + b"\x01\x05U1",  # LEN beyond the data
        b"\x3a\x01\x01" + b"\x01\x02U1!",  # trailing byte
        b"\x3a\x01",  # no COUNT: that is a query
    ):
        result = identity_event(bad, 1)
        assert isinstance(result, ProtocolError) and result.kind == "bad_message", bad
    with pytest.raises(ValueError):
        build_info(InfoReading(1, {"nozzle_uid": "é"}))
    with pytest.raises(KeyError):
        build_info(InfoReading(1, {"pump_colour": "red"}))


def test_errors_exact_bytes() -> None:
    wire = build_errors([(0, 64), (2, 61)])
    assert wire == bytes.fromhex("3B 02 00 64 02 61")
    assert parse_errors(wire) == [(0, 64), (2, 61)]
    assert build_errors([]) == b"\x3b\x00"
    with pytest.raises(ValueError):
        build_errors([(0, 100)])


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 99)), max_size=100))
def test_errors_round_trip(active: list[tuple[int, int]]) -> None:
    assert parse_errors(build_errors(active)) == active


@pytest.mark.parametrize(
    "wire", [b"\x3b\x01\x00\x6a", b"\x3b\x01\x00", b"\x3b\x00\x00", b"\x3b", b"\x38\x00"]
)
def test_errors_malformed(wire: bytes) -> None:
    result = parse_errors(wire)
    assert isinstance(result, ProtocolError) and result.kind == "bad_message"


def test_alarm_codes_and_diff() -> None:
    assert [alarm_code(c) for c in (61, 62, 63, 64, 65, 7)] == [
        "SECURITY_AUTH_ERROR",
        "SECURITY_COMM_ERROR",
        "BOARD_NOT_INITIALISED",
        "METERING_OUT_OF_TOLERANCE",
        "ENCODER_FAULT",
        "DISPENSER_ERROR_7",
    ]
    before = frozenset({(0, 64), (1, 61)})
    now = frozenset({(1, 61), (2, 65)})
    assert diff_alarms(4, before, now) == [
        DeviceAlarm(4, 2, "ENCODER_FAULT", 65, True),
        DeviceAlarm(4, None, "METERING_OUT_OF_TOLERANCE", 64, False),
    ]
    assert diff_alarms(4, now, now) == []
