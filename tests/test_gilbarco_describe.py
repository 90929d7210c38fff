"""``forecourt decode --protocol gilbarco``: real captures, with and without the echo.

The captures are the external frames of test_gilbarco_messages.py (a
published SK700-II capture, frames laid out from the FCC's driver) in the
line order protocols.md §4 gives: command, then reply; on the master's own
receive line each command comes back first (the echo).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.tools.decode import decode
from protocols.gilbarco.census import census
from protocols.gilbarco.describe import describe
from protocols.gilbarco.messages import running_words
from tests.test_gilbarco_messages import CAPTURED_BAD, CAPTURED_TXN, FCC_SFC, FCC_TOTALS, FCC_TXN

BASE = {"protocol": "gilbarco"}
CAPTURED_VALUES = {
    "pump": 2,
    "grade": "3",
    "price": "10.70",
    "volume": "23.360",
    "amount": "250.00",
}


def messages(lines: list[dict[str, object]]) -> list[object]:
    return [line.get("message", line.get("error")) for line in lines]


def test_the_issues_capture_is_accepted() -> None:
    """The frame ``describe`` once rejected with "unexpected byte F1 at frame offset 1"."""
    (line,) = describe(CAPTURED_TXN, volume_decimals=3)
    assert line == {
        **BASE,
        "ok": True,
        "offset": 0,
        "message": "transaction",
        "fields": {
            "pump": 2,
            "grade": 3,
            "price": 1070,
            "volume": 23_360,
            "money": 25_000,
            "level": 1,
            "header": "0B 00 00 02",
            "digits": [4, 6, 6],
            "lrc": 0xC,
        },
        "values": CAPTURED_VALUES,
    }
    status, lines = decode("gilbarco", [CAPTURED_TXN.hex(" ").upper()])  # the CLI's path
    assert status == 0 and lines[0]["message"] == "transaction"


def test_a_masters_receive_line_with_the_echo() -> None:
    capture = b"\x02\x02\xa2" + b"\x42\x42" + CAPTURED_TXN + b"\x52\x52" + FCC_TOTALS
    lines = describe(capture, volume_decimals=3)
    assert messages(lines) == [
        "command",
        "echo",
        "status",
        "command",
        "echo",
        "transaction",
        "command",
        "echo",
        "totals",
    ]
    assert lines[2]["values"] == {"status": "end of transaction (PEOT)", "nozzle_state": "idle"}
    assert lines[5]["values"] == CAPTURED_VALUES
    assert [line["offset"] for line in lines] == [0, 1, 2, 3, 4, 5, 38, 39, 40]
    assert lines[8]["values"] == {
        "grades": [
            {
                "grade": "1",
                "volume": "123456.78",
                "amount": "876543.21",
                "price_1": "7.85",
                "price_2": "7.90",
            },
            {
                "grade": "2",
                "volume": "10000.00",
                "amount": "800000.00",
                "price_1": "8.36",
                "price_2": "8.36",
            },
        ]
    }


def test_a_tap_without_the_echo() -> None:
    capture = b"\x03\x93" + b"\x63" + running_words(4210) + b"\x03\xa3\x43" + FCC_TXN
    lines = describe(capture)
    assert messages(lines) == [
        "command",
        "status",
        "command",
        "running display",
        "command",
        "status",
        "command",
        "transaction",
    ]
    assert lines[3]["values"] == {"amount": "42.10"}
    assert lines[7]["values"] == {
        "pump": 3,
        "grade": "2",
        "price": "7.85",
        "volume": "20.00",
        "amount": "157.00",
    }
    assert all(line["ok"] for line in lines)


def test_replies_only_and_commands_only() -> None:
    lines = describe(b"\x61\x72" + FCC_TXN, direction="pump")
    assert messages(lines) == ["status", "status", "transaction"]
    assert lines[0]["values"] == {"status": "off", "nozzle_state": "idle"}
    lines = describe(b"\x01\x41\x21\x11\x31\xfc", direction="master")
    assert [line["values"] for line in lines] == [
        {"command": "status", "read_only": True},
        {"command": "transaction data", "read_only": True},
        {"command": "data next", "read_only": False},
        {"command": "authorise", "read_only": False},
        {"command": "stop", "read_only": False},
        {"command": "all stop", "read_only": False},
    ]


def test_a_price_change_and_a_special_function() -> None:
    lines = describe(b"\x21\xd1" + FCC_SFC)
    assert messages(lines) == ["command", "status", "master data"]
    assert lines[1]["values"] == {"status": "ready to receive data"}
    assert lines[2]["fields"] == {"fields": "00×1 FE×3"}
    (alone,) = describe(FCC_SFC)
    assert alone["message"] == "frame"  # neither layout: its fields, its LRC checked


def test_rejected_frames_say_why() -> None:
    assert describe(CAPTURED_BAD) == [
        {**BASE, "ok": False, "offset": 0, "error": "bad_lrc", "detail": "LRC E, computed 0"}
    ]
    lines = describe(b"\x41" + FCC_TOTALS)  # totals where a transaction was asked
    assert lines[1]["error"] == "bad_message" and "not a transaction layout" in lines[1]["detail"]
    assert messages(describe(b"\x41" + CAPTURED_TXN[:12])) == ["command", "truncated"]
    assert messages(describe(b"\xe3\xe4\x01\x61")) == ["garbage", "command", "status"]


def test_census_counts_answered_commands_and_checked_frames() -> None:
    capture = (
        b"\x02\x02\xa2\x42\x42" + CAPTURED_TXN + b"\x52" + FCC_TOTALS + CAPTURED_BAD + b"\xe1\xe2"
    )
    found = census(capture)
    assert (found.good_frames, found.master_frames, found.pump_frames) == (3, 3, 3)
    assert found.bad_frames == 2 and found.addresses == frozenset({2})
    assert found.evidence[0].startswith("status at 2")
    assert census(bytes(range(0x70, 0xE0))).good_frames == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(["auto", "pump", "master"]))
def test_random_bytes_every_byte_is_accounted_for(data: bytes, direction: str) -> None:
    lines = describe(data, direction=direction)
    assert [line["offset"] for line in lines] == sorted({line["offset"] for line in lines})
    assert all(line["protocol"] == "gilbarco" for line in lines)
    census(data)  # never raises either
