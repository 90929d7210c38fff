"""``forecourt decode --protocol furen`` and the Furen census: the FCC's frames
(fangym0335/first src/lischn009.c) described field by field, every
rejection with its reason, and the sides of a line told apart."""

from __future__ import annotations

import json
import subprocess
import sys

from hil.stack import ROOT
from protocols.descriptor import Census
from protocols.furen.census import census
from protocols.furen.describe import describe
from tests.test_furen_driver import FUELLING_2, IDLE, TOTALS_REPLY, TRANSIENT
from tests.test_furen_framer import AUTHORISE, SALE_REPLY, SALE_REQUEST, STATUS_REQUEST


def test_the_fccs_frames_are_described_field_by_field() -> None:
    got = describe(STATUS_REQUEST + FUELLING_2 + SALE_REQUEST + SALE_REPLY + TOTALS_REPLY)
    assert [(d["offset"], d["message"], d["side"], d["nozzle"]) for d in got] == [
        (0, "status_query", "master", None),
        (16, "status", "pump", 2),
        (31, "sale_query", "master", 2),
        (40, "sale", "pump", 2),
        (67, "totals", "pump", 1),
    ]
    assert got[0]["values"] == {"clock": "2008-08-20T10:30:00"}
    assert got[1]["values"] == {"state": "fuelling", "volume": "12.34", "amount": "96.87"}
    assert got[3]["fields"] == {
        "volume": 2500,
        "amount": 19625,
        "price": 785,
        "volume_total": 123456,
        "amount_total": 9876543,
    }
    assert got[3]["values"] == {
        "volume": "25.00",
        "amount": "196.25",
        "price": "7.85",
        "volume_total": "1234.56",
        "amount_total": "98765.43",
        "order_no": "123456",
    }
    assert got[4]["values"] == {"volume_total": "1234.56", "amount_total": "98765.43"}
    json.dumps(got)  # everything serialisable


def test_commands_transients_and_rejections_say_what_they_are() -> None:
    bad_crc = TOTALS_REPLY[:-1] + bytes([TOTALS_REPLY[-1] ^ 1])
    got = describe(AUTHORISE + IDLE + TRANSIENT + b"\x01\x02" + bad_crc + SALE_REPLY[:10])
    assert [(d["ok"], d.get("message") or d.get("error")) for d in got] == [
        (True, "authorise"),
        (True, "status"),
        (True, "status"),
        (False, "garbage"),
        (False, "bad_crc"),
        (False, "truncated"),
    ]
    assert got[0]["side"] is None  # 61's answer may have its shape
    assert got[1]["values"] == {"state": "idle"}
    assert got[2]["values"] == {"state": "power-up transient (skipped)"}
    # A good frame that is no message we know.
    [odd] = describe(bytes.fromhex("FA 00 00 00 00 04 77 01 02 03") + b"\x00\x00")
    assert odd["ok"] is False


def test_the_cli_decodes_a_furen_capture() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "decode", "--protocol", "furen", SALE_REPLY.hex(" ")],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0
    [line] = [json.loads(text) for text in done.stdout.splitlines()]
    assert (line["message"], line["values"]["volume"]) == ("sale", "25.00")


def test_census_tells_the_sides_and_never_counts_a_bad_frame() -> None:
    line = STATUS_REQUEST + IDLE + SALE_REQUEST + SALE_REPLY + AUTHORISE
    assert census(line) == Census(
        good_frames=5,
        bad_frames=0,
        addresses=frozenset(),  # Furen frames name no pump
        master_frames=2,
        pump_frames=2,
        evidence=(
            "furen master [3] 00 [6] 30 LEN 8",
            "furen pump [3] 00 [6] 5A LEN 2",
            "furen master [3] F1 [6] 56 LEN 1",
            "furen pump [3] F1 [6] 56 LEN 19",
        ),
    )
    hit = SALE_REPLY[:12] + bytes([SALE_REPLY[12] ^ 0x10]) + SALE_REPLY[13:]
    got = census(b"\x00\x11" + hit + SALE_REQUEST + SALE_REPLY[:-3])
    assert (got.good_frames, got.bad_frames, got.master_frames) == (1, 2, 1)
