"""``forecourt decode --protocol tls`` support: describe() and parse_text_frame()."""

from __future__ import annotations

import json

import pytest

from protocols.tls import frame_response
from protocols.tls.describe import describe, parse_text_frame

TEXT = (
    r"\x01i2010096012215060110000074"
    "59A680045A928004592D8004243E1480000000042158F5C00000000&&EF1F"
    r"\x03"
)
FRAME = parse_text_frame(TEXT)


def test_text_and_hex_forms_give_the_same_bytes() -> None:
    assert FRAME.startswith(b"\x01i20100") and FRAME.endswith(b"&&EF1F\x03")
    assert parse_text_frame(FRAME.hex(" ")) == FRAME
    assert parse_text_frame(FRAME.hex().upper()) == FRAME
    assert parse_text_frame(TEXT.replace(r"\x01", "<SOH>").replace(r"\x03", "<ETX>")) == FRAME
    assert parse_text_frame("  " + TEXT + "\n") == FRAME
    assert parse_text_frame(TEXT[:40] + "\n   " + TEXT[40:]) == FRAME  # a wrapped paste
    assert parse_text_frame(r"\x01i20100960122150601\x200000") == b"\x01i20100960122150601 0000"
    assert parse_text_frame(r"\x019999FF1B\x03") == b"\x019999FF1B\x03"
    with pytest.raises(ValueError):
        parse_text_frame("i201\u00e900")


def test_describe_lines() -> None:
    capture = b"xx" + FRAME + b"\r\n" + b"\x019999FF1B\x03" + FRAME[:-5] + b"0000\x03"
    capture += frame_response("i20500", "9601221506" + "010102") + FRAME[:20]
    lines = describe(capture)
    json.dumps(lines)  # JSON-able throughout
    assert [(line["ok"], line["offset"], line.get("error")) for line in lines] == [
        (False, 0, "garbage"),
        (True, 2, None),
        (False, 93, "unknown_command"),  # 2 + 89-byte frame + CR LF
        (False, 103, "bad_checksum"),
        (True, 192, None),
        (False, 222, "truncated"),
    ]
    ok = lines[1]
    assert (ok["protocol"], ok["message"], ok["function"]) == ("tls", "i201", "i20100")
    tank = ok["report"]["tanks"][0]
    assert tank["volume"] == "4941" and tank["height"] == "48.97"
    assert tank["temperature"] == "37.39" and tank["delivery_in_progress"] is False
    assert ok["report"]["at"] == "1996-01-22T15:06:00"
    alarms = lines[4]["report"]
    assert alarms["tanks"] == {"1": [2]} and alarms["names"] == {"1": ["LEAK_ALARM"]}
    assert lines[3]["detail"] == "checksum 0000, computed EF1F"
