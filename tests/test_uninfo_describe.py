"""``forecourt decode --protocol uninfo`` and the Uninfo census: an FCC's
conversation (fangym0335/first src/lischn011.c, frames from
tests/uninfo_source.py) described item by item, every rejection with its
reason, and the sides of the loop told apart."""

from __future__ import annotations

import json
import subprocess
import sys

from hil.stack import ROOT
from protocols.descriptor import Census
from protocols.uninfo.census import census
from protocols.uninfo.describe import describe
from tests.test_uninfo_monitor import CONVERSATION
from tests.uninfo_source import fcc_price_block, fcc_sale

D_REPLY = bytes([0xD3, 0xFF, *[0xE0] * 6, 0xE0, 0xFB, 0xE0, 0xF0])
LOOP = b"".join(r + a for r, a in CONVERSATION)


def test_the_fccs_conversation_is_described_item_by_item() -> None:
    got = describe(LOOP)
    assert all(d["ok"] for d in got) and len(got) == 2 * len(CONVERSATION)
    assert [d["side"] for d in got[:2]] == ["master", "pump"]
    assert [d["message"] for d in got[:4]] == ["status_query", "status", "totals_query", "totals"]
    assert got[1]["values"] == {"state": "idle"}
    assert got[3]["values"]["2"] == {
        "volume_total": "107223.28",
        "amount_total": "881551.77",
        "price": "8.36",
    }
    display, sale = got[9], got[15]
    assert (display["message"], display["values"]) == (
        "display",
        {"amount": "12.54", "volume": "1.50"},
    )
    assert (sale["message"], sale["pump"], sale["values"]) == (
        "sale",
        3,
        {"price": "8.36", "volume": "25.00", "amount": "209.00"},
    )


def test_commands_and_rejections_say_what_they_are() -> None:
    price = fcc_price_block(3, 0x0836)
    got = describe(b"\x93\xfe" + price + D_REPLY)
    assert [d["message"] for d in got] == ["authorise", "stop_all", "price", "data_reply"]
    assert got[2]["fields"]["function"] == 1 and got[3]["values"] == {"result": "ok"}
    hit = bytearray(fcc_sale(3, 785, 2500, 19625))
    hit[30] ^= 0x01
    cut = fcc_sale(3, 785, 2500, 19625)[:10]
    bad = describe(b"\x00\x11" + b"\xc3" + bytes(hit) + b"\xa3" + b"\xc3" + cut)
    assert [(d["ok"], d.get("error")) for d in bad] == [
        (False, "garbage"),
        (True, None),  # the request
        (False, "bad_lrc"),
        (False, "garbage"),  # the garbled record's words, read again
        (True, None),  # a status query the pump did not answer
        (True, None),  # the next request
        (False, "truncated"),  # the capture ends inside its answer
    ]


def test_the_cli_decodes_an_uninfo_capture() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "decode", "--protocol", "uninfo", LOOP[:2].hex(" ")],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0
    lines = [json.loads(text) for text in done.stdout.splitlines()]
    assert [(d["message"], d["values"]) for d in lines] == [
        ("status_query", {}),
        ("status", {"state": "idle"}),
    ]


def test_census_tells_the_sides_and_never_counts_a_bad_reply() -> None:
    got = census(LOOP)
    assert got == Census(
        good_frames=18,
        bad_frames=0,
        addresses=frozenset({3}),
        master_frames=9,
        pump_frames=9,
        evidence=(
            "uninfo A3 (status of pump 3) answered, 1 words",
            "uninfo B3 (totals of pump 3) answered, 84 words",
            "uninfo A3 (status of pump 3) answered, 1 words",
            "uninfo A3 (status of pump 3) answered, 1 words",
        ),
    )
    hit = bytearray(fcc_sale(3, 785, 2500, 19625))
    hit[30] ^= 0x01
    got = census(b"\xc3" + bytes(hit) + b"\xa3\x13")
    assert (got.good_frames, got.master_frames, got.pump_frames) == (2, 1, 1)
    assert got.bad_frames >= 1
