"""DART transactions: exact layouts, round trips, malformed data, describe()."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bcd import scaled
from protocols.dart.describe import describe
from protocols.dart.framer import Frame, encode_frame
from protocols.dart.messages import (
    REPLY_LNG,
    REQUEST_LNG,
    Cd1,
    Cd101,
    Dc1,
    Dc2,
    Dc3,
    Dc5,
    Dc9,
    Dc101,
    Reply,
    Request,
    alarm_code,
    build,
    parse_reply,
    parse_request,
)
from protocols.events import ProtocolError

H = bytes.fromhex

LAYOUTS: list[tuple[Request | Reply, int, bytes]] = [
    (Cd1(0x00), 0x01, H("00")),
    (Cd1(0x04), 0x01, H("04")),
    (Cd101(2), 0x65, H("02")),
    (Dc1(5), 0x01, H("05")),
    (Dc2(1234, 10316), 0x02, H("00001234 00010316")),
    (Dc3(836, 2, True), 0x03, H("000836 12")),
    (Dc3(99999, 15, False), 0x03, H("099999 0F")),
    (Dc5(64), 0x05, H("40")),
    (Dc9("0123456789"), 0x09, H("0123456789")),
    (Dc101(2, 10602985, 73069068, 5), 0x65, H("02 0010602985 0073069068 0000000005")),
]


@pytest.mark.parametrize(("message", "trans", "data"), LAYOUTS)
def test_layouts_both_ways(message: Request | Reply, trans: int, data: bytes) -> None:
    assert build(message) == (trans, data)
    parse = parse_request if isinstance(message, Cd1 | Cd101) else parse_reply
    assert parse(trans, data) == message


def test_directions_share_trans_codes() -> None:
    assert parse_request(0x01, H("04")) == Cd1(4)
    assert parse_reply(0x01, H("04")) == Dc1(4)
    assert parse_request(0x65, H("03")) == Cd101(3)
    assert isinstance(parse_reply(0x65, H("03")), ProtocolError)  # DC101 is 16 bytes


@pytest.mark.parametrize(
    ("trans", "data", "detail"),
    [
        (0x01, H(""), "DC1: 0 data bytes, LNG must be 1"),
        (0x01, H("0500"), "DC1: 2 data bytes, LNG must be 1"),
        (0x01, H("03"), "DC1: unknown status 3"),
        (0x01, H("09"), "DC1: unknown status 9"),
        (0x02, H("00001234 0001031A"), "DC2: AMO 0001031A is not BCD"),
        (0x02, H("00001234"), "DC2: 4 data bytes, LNG must be 8"),
        (0x03, H("0008F6 01"), "DC3: PRI 0008F6 is not BCD"),
        (0x09, H("012345678A"), "DC9: identity 012345678A is not BCD"),
        (0x65, H("02 0010602985 0073069068 00000000"), "DC101: 15 data bytes, LNG must be 16"),
        (0x65, H("02 00106029F5 0073069068 0000000005"), "DC101: TOTVAL 00106029F5 is not BCD"),
    ],
)
def test_malformed_reply_is_bad_message(trans: int, data: bytes, detail: str) -> None:
    assert parse_reply(trans, data) == ProtocolError("bad_message", detail)


def test_unknown_trans_is_none_and_bad_request_is_bad_message() -> None:
    assert parse_reply(0x07, H("01 02")) is None
    assert parse_request(0x03, H("00 00 12")) is None
    assert parse_request(0x01, H("0004")) == ProtocolError(
        "bad_message", "CD1: 2 data bytes, LNG must be 1"
    )


def test_build_refuses_what_does_not_fit() -> None:
    for message in (
        Dc2(10**8, 0),
        Dc3(10**6, 1, False),
        Dc3(1, 16, False),
        Dc9("12345"),
        Dc101(1, 10**10, 0, 0),
        Cd1(256),
        Dc5(-1),
    ):
        with pytest.raises(ValueError):
            build(message)
    with pytest.raises(TypeError):
        build("CD1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "decimals", "text"),
    [(1234, 2, "12.34"), (0, 2, "0.00"), (5, 3, "0.005"), (10602985, 2, "106029.85"), (7, 0, "7")],
)
def test_scaled_keeps_its_places(raw: int, decimals: int, text: str) -> None:
    assert str(scaled(raw, decimals)) == text
    assert scaled(raw, decimals) == Decimal(text)


def test_alarm_codes() -> None:
    assert alarm_code(64) == "METERING_OUT_OF_TOLERANCE"
    assert alarm_code(9) == "DISPENSER_ERROR_9"


def bcd(width: int) -> st.SearchStrategy[int]:
    return st.integers(0, 10 ** (2 * width) - 1)


messages = st.one_of(
    st.builds(Cd1, st.integers(0, 255)),
    st.builds(Cd101, st.integers(0, 255)),
    st.builds(Dc1, st.sampled_from([0, 1, 2, 4, 5, 6, 7, 8])),
    st.builds(Dc2, bcd(4), bcd(4)),
    st.builds(Dc3, bcd(3), st.integers(0, 15), st.booleans()),
    st.builds(Dc5, st.integers(0, 255)),
    st.builds(Dc9, st.from_regex(r"\A[0-9]{10}\Z")),
    st.builds(Dc101, st.integers(0, 255), bcd(5), bcd(5), bcd(5)),
)


@given(messages)
def test_round_trip(message: Request | Reply) -> None:
    trans, data = build(message)
    parse = parse_request if isinstance(message, Cd1 | Cd101) else parse_reply
    assert parse(trans, data) == message


@given(st.integers(0, 255), st.binary(max_size=20))
def test_arbitrary_data_never_raises(trans: int, data: bytes) -> None:
    """Any TRANS and data: None for a TRANS not read, a refusal for a wrong
    LNG, else a message of that TRANS or a refusal — never an exception."""
    for parse, lengths in ((parse_reply, REPLY_LNG), (parse_request, REQUEST_LNG)):
        result = parse(trans, data)
        if trans not in lengths:
            assert result is None
        elif len(data) != lengths[trans]:
            assert isinstance(result, ProtocolError) and result.kind == "bad_message"
        else:
            assert isinstance(result, ProtocolError) or build(result)[0] == trans


# ---------------------------------------------------------------- describe


def test_describe_a_conversation() -> None:
    reply = Frame.data(
        0x51,
        2,
        [build(Dc1(5)), build(Dc2(1234, 10316)), build(Dc3(836, 2, False)), (0x07, b"\x01")],
    )
    totals = Frame.data(0x51, 3, [build(Dc101(2, 10602985, 73069068, 5)), (0x02, b"\x00")])
    capture = b"\x00" + encode_frame(Frame.poll(0x51)) + encode_frame(reply)
    capture += encode_frame(totals) + encode_frame(Frame.ack(0x51, 3))[:2]
    lines = describe(capture)
    json.dumps(lines)  # JSON-able
    assert lines[0] == {"ok": False, "offset": 0, "error": "garbage", "detail": "1 bytes skipped"}
    assert lines[1] == {
        "ok": True,
        "offset": 1,
        "protocol": "dart",
        "message": "poll",
        "adr": 0x51,
        "pump": 2,
        "ctrl": 0x20,
        "seq": None,
        "transactions": [],
    }
    assert lines[2]["message"] == "data" and lines[2]["seq"] == 2
    assert lines[2]["transactions"] == [
        {
            "trans": "DC1",
            "code": 1,
            "fields": {"status": 5},
            "values": {"status": "filling_completed"},
        },
        {
            "trans": "DC2",
            "code": 2,
            "fields": {"volume": 1234, "amount": 10316},
            "values": {"volume": "12.34", "amount": "103.16"},
        },
        {
            "trans": "DC3",
            "code": 3,
            "fields": {"price": 836, "nozzle": 2, "nozzle_out": 0},
            "values": {"price": "8.36", "nozzle": 2, "nozzle_out": False},
        },
        {"trans": "0x07", "code": 7, "data": "01"},
    ]
    assert lines[3]["transactions"] == [
        {
            "trans": "DC101",
            "code": 101,
            "fields": {"counter": 2, "volume": 10602985, "amount": 73069068, "fillings": 5},
            "values": {
                "nozzle": 2,
                "volume_total": "106029.85",
                "amount_total": "730690.68",
                "fillings": 5,
            },
        },
        {"trans": "DC2", "code": 2, "error": "DC2: 1 data bytes, LNG must be 8"},
    ]
    assert lines[4] == {
        "ok": False,
        "offset": len(capture) - 2,
        "error": "truncated",
        "detail": "incomplete frame of 2 bytes at the end of the capture",
    }


def test_describe_master_side_and_decimals() -> None:
    request = Frame.data(0x50, 0, [build(Cd1(0)), build(Cd1(6)), build(Cd101(1))])
    lines = describe(encode_frame(request), sender="master")
    assert [t["values"] for t in lines[0]["transactions"]] == [
        {"dcc": "return_status"},
        {"dcc": "forbidden_06"},
        {"nozzle": 1},
    ]
    dc2 = encode_frame(Frame.data(0x50, 0, [build(Dc2(1234, 10316))]))
    values = describe(dc2, volume_decimals=3, amount_decimals=1)[0]["transactions"][0]["values"]
    assert values == {"volume": "1.234", "amount": "1031.6"}


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (H("51 31 01 01 05 00 00 03 FA"), "bad_crc"),
        (H("51 31 01 01 FA"), "bad_escape"),
        (H("51 31 FA"), "truncated"),
        (H("00 01 02"), "garbage"),
    ],
)
def test_describe_rejections(wire: bytes, error: str) -> None:
    lines = describe(wire)
    assert [(line["ok"], line["error"], line["offset"]) for line in lines] == [(False, error, 0)]


@given(st.binary(max_size=300))
def test_describe_never_raises_and_covers_every_byte(data: bytes) -> None:
    lines = describe(data)
    offsets = [line["offset"] for line in lines]
    assert offsets == sorted(set(offsets))
    assert (offsets[0] if offsets else 0) == 0
