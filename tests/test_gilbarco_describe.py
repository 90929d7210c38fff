"""``forecourt decode --protocol gilbarco``: describe()."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.gilbarco.describe import describe
from protocols.gilbarco.framer import encode_frame
from protocols.gilbarco.messages import (
    GradeTotals,
    TotalsData,
    TransactionData,
    totals_body,
    transaction_body,
)

TXN = encode_frame(transaction_body(TransactionData(1, 785, 2000, 15700)))
TOT = encode_frame(totals_body(TotalsData((GradeTotals(1, 10_002_000, 80_000_000),))))
BASE = {"protocol": "gilbarco"}


def test_a_capture_in_stream_order() -> None:
    bad = TXN[:-2] + b"\xe3\xf0"
    other = encode_frame(b"\xf8\xe1")
    capture = b"\x91" + TXN + b"\x01\xe3\xe4" + TOT + bad + other + b"\xa0" + TXN[:5]
    assert describe(capture) == [
        {
            **BASE,
            "ok": True,
            "offset": 0,
            "message": "status",
            "fields": {"status": 9, "pump": 1},
            "values": {"status": "busy", "nozzle_state": "fuelling"},
        },
        {
            **BASE,
            "ok": True,
            "offset": 1,
            "message": "transaction",
            "fields": {"grade": 1, "price": 785, "volume": 2000, "money": 15700, "lrc": 2},
            "values": {"grade": "1", "price": "7.85", "volume": "20.00", "amount": "157.00"},
        },
        {
            **BASE,
            "ok": False,
            "offset": 26,
            "error": "bad_message",
            "detail": "01: status 0 (pump 1) is not one of this subset; "
            "as a command: status (try direction='master')",
        },
        {
            **BASE,
            "ok": False,
            "offset": 27,
            "error": "garbage",
            "detail": "2 words outside a frame: E3 E4",
        },
        {
            **BASE,
            "ok": True,
            "offset": 29,
            "message": "totals",
            "fields": {"grades": [{"grade": 1, "volume": 10002000, "money": 80000000}], "lrc": 1},
            "values": {"grades": [{"grade": "1", "volume": "100020.00", "amount": "800000.00"}]},
        },
        {**BASE, "ok": False, "offset": 53, "error": "bad_lrc", "detail": "LRC 3, computed 2"},
        {
            **BASE,
            "ok": False,
            "offset": 78,
            "error": "bad_message",
            "detail": "good LRC, but neither transaction nor totals: F8×1",
        },
        {
            **BASE,
            "ok": True,
            "offset": 84,
            "message": "status",
            "fields": {"status": 10, "pump": 16},
            "values": {"status": "end of transaction", "nozzle_state": "idle"},
        },
        {
            **BASE,
            "ok": False,
            "offset": 85,
            "error": "truncated",
            "detail": "frame of 5 bytes without its end",
        },
    ]
    json.dumps(describe(capture))  # JSON-able


def test_master_direction_reads_single_bytes_as_commands() -> None:
    got = describe(bytes([0x01, 0x40, 0x5F, 0x13, 0x21]), direction="master")
    assert [(d["fields"], d["values"]) for d in got] == [
        ({"command": 0, "pump": 1}, {"command": "status", "read_only": True}),
        ({"command": 4, "pump": 16}, {"command": "transaction data", "read_only": True}),
        ({"command": 5, "pump": 15}, {"command": "totals", "read_only": True}),
        ({"command": 1, "pump": 3}, {"command": "authorise", "read_only": False}),
        ({"command": 2, "pump": 1}, {"command": "data next", "read_only": False}),
    ]
    assert describe(b"\xd1", direction="master")[0]["values"]["command"] == "unknown D"


def test_pump_direction_and_unknown_status() -> None:
    assert describe(b"\x7f", direction="pump")[0]["values"]["status"] == "call"
    (got,) = describe(b"\xd2")
    assert got["error"] == "bad_message" and "status D (pump 2)" in got["detail"]
    assert "as a command" not in got["detail"]
    with pytest.raises(ValueError):
        describe(b"", direction="sideways")
    assert describe(b"") == []


def test_totals_breaking_a_rule() -> None:
    one = totals_body(TotalsData((GradeTotals(1, 5, 6),)))
    (got,) = describe(encode_frame(one + one))
    assert (got["error"], got["detail"]) == ("bad_message", "totals name a grade twice")


@settings(max_examples=500)
@given(st.binary(max_size=300), st.sampled_from(["auto", "pump", "master"]))
def test_random_bytes_every_byte_is_accounted_for(data: bytes, direction: str) -> None:
    got = describe(data, direction=direction)
    offsets = [d["offset"] for d in got]
    assert offsets == sorted(set(offsets)) and all(0 <= o < len(data) for o in offsets)
    assert (not data) == (not got)
    for d in got:
        assert d["protocol"] == "gilbarco" and isinstance(d["ok"], bool)
        assert d.get("error") in (None, "bad_lrc", "truncated", "garbage", "bad_message")
    json.dumps(got)
