"""describe(): what a Sinopec capture says, frame by frame (``forecourt decode``)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from collector.tools.decode import decode
from protocols import load_describer
from protocols.sinopec.describe import describe
from protocols.sinopec.extensions import (
    InfoReading,
    TotalsReading,
    build_errors,
    build_info,
    build_totals,
)
from protocols.sinopec.framer import Frame, encode_frame
from protocols.sinopec.messages import build_confirm
from tests.test_sinopec_messages import RECORD_WIRE

# The computed examples of protocols.md §2 ("CRC verified").
EXAMPLE_POLL = bytes.fromhex("FA 00 01 01 00 01 30 B8 3D")
EXAMPLE_ESCAPED = bytes.fromhex("FA 00 01 02 00 03 31 FA FA 10 C5 03")


def test_protocols_md_examples_exact() -> None:
    assert describe(EXAMPLE_POLL + EXAMPLE_ESCAPED) == [
        {
            "ok": True,
            "offset": 0,
            "protocol": "sinopec",
            "message": "poll",
            "dst": 0,
            "src": 1,
            "ctrl": 1,
            "frame_no": 1,
            "fields": {},
            "values": {},
        },
        {
            # A good frame whose data (31, NUM 0xFA, one byte) is no real-time report.
            "ok": False,
            "offset": 9,
            "error": "bad_message",
            "detail": "31 report malformed: 3 bytes do not hold NUM 250 entries "
            "(dst 00, src 01, ctrl 02, frame_no 02; data 31 FA 10)",
        },
    ]
    assert load_describer("sinopec") is describe


def test_framing_errors_in_stream_order() -> None:
    bad_crc = EXAMPLE_POLL[:-1] + b"\x3c"
    bad_length = bytes.fromhex("FA 00 01 02 00 0A 30")
    # A bad frame's error covers the bytes up to the next plausible frame start:
    # a bad-length "frame" is not one, so it goes with the bad CRC before it.
    data = b"\x01\x02" + EXAMPLE_POLL + bad_length + bad_crc + bad_length + bad_crc
    data += EXAMPLE_POLL + EXAMPLE_POLL[:5]
    assert describe(data) == [
        {"ok": False, "offset": 0, "error": "garbage", "detail": "2 bytes skipped"},
        {**describe(EXAMPLE_POLL)[0], "offset": 2},
        {
            "ok": False,
            "offset": 11,
            "error": "bad_length",
            "detail": "LEN 00 0A is not BCD 1..256",
        },
        {"ok": False, "offset": 18, "error": "bad_crc", "detail": "CRC B83C, computed B83D"},
        {"ok": False, "offset": 34, "error": "bad_crc", "detail": "CRC B83C, computed B83D"},
        {**describe(EXAMPLE_POLL)[0], "offset": 43},
        {
            "ok": False,
            "offset": 52,
            "error": "truncated",
            "detail": "incomplete frame of 5 bytes at the end of the capture",
        },
    ]


def frame(data: bytes) -> bytes:
    return encode_frame(Frame(dst=0xE0, src=1, ctrl=0x05, data=data))


def test_every_message_we_use() -> None:
    data = b"".join(
        frame(d)
        for d in (
            RECORD_WIRE,
            build_confirm(5),
            b"\x38\x02",
            build_totals(TotalsReading(2, 10_000, 80_000)),
            b"\x3a\x00",
            build_info(InfoReading(0, {"mcu_id": "M-1"})),
            b"\x3b",
            build_errors([(0, 64), (2, 61)]),
            b"\x33\x01",
        )
    )
    lines = describe(data)
    header = {"ok": True, "protocol": "sinopec", "dst": 0xE0, "src": 1, "ctrl": 5, "frame_no": 5}
    assert all(line.items() >= header.items() for line in lines[:-1])
    got = [(line.get("message"), line.get("fields"), line.get("values")) for line in lines]
    record_fields = got[0][1]
    assert record_fields is not None and record_fields["t_mac"] == "FAFA0001"
    assert (record_fields["pos_ttc"], record_fields["time"], record_fields["g_code"]) == (
        123456,
        "20261122081502",
        "1092",
    )
    assert got[0][2] == {
        "order_no": "123456",
        "ended_at": "2026-11-22T08:15:02",
        "nozzle": 2,
        "grade": "1092",
        "price": "7.85",
        "volume": "30.12",
        "amount": "236.44",
        "totalizer_volume_end": "100030.12",
        "balance": "5000.00",
    }
    assert got[1:-1] == [
        ("confirm", {"pos_ttc": 5}, {"order_no": "5"}),
        ("totals_query", {"nzn": 2}, {"nozzle": 2}),
        (
            "totals",
            {"nzn": 2, "v_tot": 10_000, "a_tot": 80_000},
            {"nozzle": 2, "volume": "100.00", "amount": "800.00"},
        ),
        ("info_query", {"nzn": 0}, {"nozzle": None}),
        (
            "info",
            {"nzn": 0, "count": 1, "items": [{"tag": 3, "value": "4D2D31"}]},
            {"nozzle": None, "components": {"mcu_id": "M-1"}},
        ),
        ("errors_query", {}, {}),
        (
            "errors",
            {"count": 2, "entries": [{"nzn": 0, "code": "64"}, {"nzn": 2, "code": "61"}]},
            {
                "alarms": [
                    {"nozzle": None, "code": 64, "alarm": "METERING_OUT_OF_TOLERANCE"},
                    {"nozzle": 2, "code": 61, "alarm": "SECURITY_AUTH_ERROR"},
                ]
            },
        ),
    ]
    assert lines[-1] == {
        "ok": False,
        "offset": len(data) - len(frame(b"\x33\x01")),
        "error": "bad_message",
        "detail": "command 33 is not decoded (dst E0, src 01, ctrl 05, frame_no 05; data 33 01)",
    }
    json.dumps(lines)  # serialisable as is


def test_forecourt_decode_uses_it() -> None:
    status, lines = decode("sinopec", ["FA 00 01 01 00 01 30 B8 3D"])
    assert status == 0 and lines == describe(EXAMPLE_POLL)
    status, lines = decode("sinopec", ["FA 00 01 01 00 01 30 B8 3C"])
    assert status == 1 and [line["error"] for line in lines] == ["bad_crc"]


@given(st.binary(max_size=400))
def test_any_bytes_described_in_order_and_serialisable(data: bytes) -> None:
    lines = describe(data)
    offsets = [line["offset"] for line in lines]
    assert offsets == sorted(set(offsets)) and (not data or offsets[0] == 0)
    assert {line.get("error") for line in lines} <= {
        None, "garbage", "bad_crc", "bad_length", "truncated", "bad_message",
    }  # fmt: skip
    json.dumps(lines)
