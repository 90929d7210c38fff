"""``forecourt decode``: captures pasted by a technician, frame by frame."""

from __future__ import annotations

import json
import subprocess
import sys

import protocols
from collector.tools.decode import decode, parse_hex
from hil.stack import ROOT


def cli(*args: str, stdin: str | None = None) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "decode", *args],
        cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=30,
    )  # fmt: skip
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_hex_in_the_forms_sniffers_print() -> None:
    assert parse_hex("FA 00 01") == b"\xfa\x00\x01"
    assert parse_hex("0xFA,0x00,0x01") == b"\xfa\x00\x01"
    assert parse_hex("fa:00-01") == b"\xfa\x00\x01"


def test_sinopec_poll_example_through_the_cli() -> None:
    status, lines = cli("--protocol", "sinopec", "FA 00 01 01 00 01 30 B8 3D")
    assert status == 0
    assert lines == [
        {"ok": True, "offset": 0, "protocol": "sinopec", "message": "poll", "dst": 0, "src": 1,
         "ctrl": 1, "frame_no": 1, "fields": {}, "values": {}}
    ]  # fmt: skip


def test_rejections_say_why_and_exit_1() -> None:
    status, lines = cli("--protocol", "sinopec", "00 FA 00 01 01 00 01 30 B8 3E")
    assert status == 1
    assert [(line["offset"], line["error"]) for line in lines] == [(0, "garbage"), (1, "bad_crc")]


def test_stdin_and_bad_input() -> None:
    status, lines = cli("--protocol", "sinopec", "-", stdin="FA 00 01 01 00 01 30 B8 3D\n")
    assert status == 0 and lines[0]["message"] == "poll"
    assert decode("sinopec", ["FA 0"])[0] == 2
    status, lines = decode("nosuch", ["00"])
    assert status == 2 and "unknown protocol 'nosuch'" in str(lines[0]["detail"])


TLS_EXAMPLE = (
    r"\x01i201009601221506011000007459A680045A928004592D8004243E148"
    r"0000000042158F5C00000000&&EF1F\x03"
)


def test_tls_example_frame_through_the_cli() -> None:
    status, lines = cli("--protocol", "tls", TLS_EXAMPLE)
    assert status == 0
    [line] = lines
    assert (line["ok"], line["message"]) == (True, "i201")
    [tank] = line["report"]["tanks"]  # type: ignore[index]
    assert (tank["tank"], tank["volume"], tank["height"], tank["temperature"]) == (
        1, "4941", "48.97", "37.39",
    )  # fmt: skip


def test_tls_bad_checksum_exit_1() -> None:
    status, lines = cli("--protocol", "tls", TLS_EXAMPLE.replace("EF1F", "EF1E"))
    assert status == 1
    assert lines[0]["error"] == "bad_checksum"


def test_protocol_choices_come_from_the_registry() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "decode", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert f"one of: {', '.join(protocols.describable())}" in " ".join(done.stdout.split())
    status, _ = cli("--protocol", "nosuch", "00")
    assert status == 2  # argparse's usage error, naming the choices on stderr
