"""``forecourt detect``'s parts: what it tries, what it may send, how it judges, what it writes.

Frames are the protocols' own (protocols.md §2's computed examples, each
family's encoder); lines are real ptys. The simulators' end-to-end cases
are tests/test_detect_sims.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import tomllib
import tty
from pathlib import Path

import pytest

import protocols
from collector.detect import judge, plan
from collector.detect.engine import detect
from collector.detect.write import WriteRefused, merge_ports, write_merged
from protocols.descriptor import LineSetting
from protocols.sinopec.framer import Frame as SinopecFrame
from protocols.sinopec.framer import encode_frame as sinopec_encode

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"

#: protocols.md §2, "Computed examples (CRC verified)".
SINOPEC_MD = bytes.fromhex("FA 00 01 01 00 01 30 B8 3D FA 00 01 02 00 03 31 FA FA 10 C5 03")
#: A POS at E0 polls pump 3 (30); pump 3 answers with real-time info (31:
#: one nozzle, state 0 idle, NZN 1).
SINOPEC_EXCHANGE = sinopec_encode(SinopecFrame(0x03, 0xE0, 0x41, b"\x30")) + sinopec_encode(
    SinopecFrame(0xE0, 0x03, 0x01, b"\x31\x01\x00\x01")
)


def with_driver() -> list[protocols.ProtocolDescriptor]:
    return [d for d in protocols.descriptors() if d.driver is not None]


# -- what detect tries -----------------------------------------------------------


def test_every_setting_of_the_brand_table_is_tried_once_most_common_first() -> None:
    families = protocols.descriptors()
    classes = plan.line_classes(families)
    members = [m for c in classes for m in c.members]
    assert sorted(members, key=str) == sorted(
        {s for d in families for s in d.line_settings}, key=str
    )
    # A UART cannot tell 5760 from 5787 (protocols.md §4): one class.
    (slow,) = [c for c in classes if c.setting.baudrate in (5760, 5787)]
    assert {s.baudrate for s in slow.members} == {5760, 5787}
    # The setting most families list first is tried first.
    firsts = [d.line_settings[0] for d in families if d.line_settings]
    assert classes[0].setting == max(set(firsts), key=firsts.count)


def test_every_family_with_a_driver_is_probed_at_each_of_its_settings() -> None:
    steps = plan.probe_steps(protocols.descriptors())
    for family in with_driver():
        at = {str(s.line.own_setting(family)) for s in steps if s.family.name == family.name}
        listed = {str(s) for s in family.line_settings}
        assert at <= listed and len(at) == len(plan.line_classes([family])), family.name
    assert all(s.family.driver is not None for s in steps)
    # Families whose status query is one byte go first (any byte is a command to them).
    weak = [plan.single_byte(s.family) for s in steps]
    assert weak == sorted(weak, reverse=True)


# -- what detect may send (SPEC D20) ---------------------------------------------


def narrowed(family: protocols.ProtocolDescriptor) -> protocols.ProtocolDescriptor:
    """The family with its first few addresses only (the bytes per address
    are the same; a silent line then costs seconds, not minutes)."""
    low, high = family.address_range
    return dataclasses.replace(family, address_range=(low, min(high, low + 3)))


def test_detect_sends_nothing_but_the_family_drivers_own_first_requests() -> None:
    """On a silent line, everything that leaves detect while it probes one
    family is that family's driver's first request to each address, at each
    of its settings, in order — bytes its driver checked against its own
    ALLOWED_COMMANDS (protocols/base.py) — and nothing else."""
    families = [narrowed(d) for d in with_driver()]
    ptys = [os.openpty() for _ in families]

    async def run() -> list[object]:
        return list(
            await asyncio.gather(
                *(
                    detect(os.ttyname(slave), families=[family], reply_ms=5)
                    for family, (_, slave) in zip(families, ptys, strict=True)
                )
            )
        )

    try:
        results = asyncio.run(run())
        for family, (master, _), result in zip(families, ptys, results, strict=True):
            sent = drain(master)
            expected = b"".join(
                plan.probe_for(family, address).request
                for step in plan.probe_steps([family])
                for address in step.addresses
            )
            assert sent == expected, family.name
            assert getattr(result, "bytes_written", None) == len(sent)
            assert getattr(result, "status", None) == "unknown"
            # The driver itself refuses anything else (its own D20 test).
            driver = family.load("driver")
            assert driver.ALLOWED_COMMANDS, family.name
    finally:
        for master, slave in ptys:
            os.close(master)
            os.close(slave)


def test_passive_detect_opens_the_line_read_only() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # a fresh pty echoes what it gets: that is the kernel's, not detect's
    try:
        os.write(master, SINOPEC_EXCHANGE * 4)
        result = asyncio.run(detect(os.ttyname(slave), passive=True, seconds=0.5))
        assert result.bytes_written == 0 and drain(master) == b""
        assert result.status == "unknown" and "silent" in result.note  # flushed at open
    finally:
        os.close(master)
        os.close(slave)


def drain(master: int) -> bytes:
    os.set_blocking(master, False)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


# -- how it judges ----------------------------------------------------------------


def test_a_family_counts_with_several_good_frames_and_ranks_by_what_it_explains() -> None:
    families = protocols.descriptors()
    once = judge.read_window(SINOPEC_EXCHANGE, families)
    assert not any(r.counts for r in once), "two frames are not several"
    window = judge.read_window(b"\x00\x11" + SINOPEC_EXCHANGE * 5 + SINOPEC_EXCHANGE[:7], families)
    best = window[0]
    assert (best.family.name, best.counts, best.clean) == ("sinopec", True, True)
    assert best.in_range == {3} and best.census.master_frames == best.census.pump_frames == 5
    assert judge.confidence(best, window[1:]) >= 0.8


def test_random_bytes_make_no_family_count() -> None:
    noise = random.Random(7).randbytes(4000)
    window = judge.read_window(noise, protocols.descriptors())
    assert not any(r.counts and r.clean for r in window), [
        (r.family.name, r.census.good_frames, r.census.bad_frames) for r in window[:3]
    ]


def test_an_answer_is_judged_against_its_own_request() -> None:
    sinopec = protocols.descriptor("sinopec")
    probe = plan.probe_for(sinopec, 3)
    answer = sinopec_encode(SinopecFrame(0xE0, 0x03, 0x40, b"\x31\x01\x00\x01"))
    ok = judge.judge_answer(sinopec, 3, probe.request, answer, accepted=True)
    assert (ok.valid, ok.conflict, ok.late) == (True, False, frozenset())
    echoed = judge.judge_answer(sinopec, 3, probe.request, probe.request + answer, True)
    assert echoed.valid, "a loop's echo of the request is not part of the answer"
    garbled = judge.judge_answer(
        sinopec, 3, probe.request, answer[:5] + b"\x00" + answer[6:], False
    )
    assert (garbled.valid, garbled.conflict) == (False, True)
    late = judge.judge_answer(sinopec, 4, plan.probe_for(sinopec, 4).request, answer, False)
    assert (late.valid, late.conflict, late.late) == (False, False, frozenset({3}))


def test_evidence_is_each_frame_as_hex_with_what_it_decodes_to() -> None:
    items = judge.evidence(protocols.descriptor("sinopec"), SINOPEC_MD[:9] + SINOPEC_EXCHANGE)
    assert [i["hex"] for i in items] == [
        SINOPEC_MD[:9].hex(" "),
        SINOPEC_EXCHANGE[:9].hex(" "),
        SINOPEC_EXCHANGE[9:].hex(" "),
    ]
    assert [i["decoded"]["message"] for i in items] == ["poll", "poll", "realtime"]


# -- what it writes ---------------------------------------------------------------


def stanza(device: str, protocol: str = "dart", **line: object) -> dict[str, object]:
    setting = LineSetting(9600, "O")
    table: dict[str, object] = {
        "number": 1, "device": device, "protocol": protocol, "baudrate": setting.baudrate,
        "bytesize": 8, "parity": setting.parity, "stopbits": 1, "addresses": [3, 5],
    }  # fmt: skip
    table.update(line)
    return table


def test_a_known_device_keeps_its_port_and_a_new_one_gets_the_lowest_free_number() -> None:
    data = {
        "ports": [
            {"number": 1, "device": "/dev/ttyS1", "protocol": "sinopec", "poll_interval_ms": 150,
             "sinopec": {"totals_every": 50}, "addresses": [1]},
            {"number": 3, "device": "/dev/ttyS3", "protocol": "udc", "mode": "relay",
             "pos_device": "/dev/ttyS4", "addresses": [1]},
        ]
    }  # fmt: skip
    found = [
        stanza("/dev/ttyS1"),
        stanza("/dev/ttyS3", "udc", mode="listen"),
        stanza("/dev/ttyS9", "furen", parity="N", addresses=[1]),
    ]
    merged = merge_ports(data, found)
    one, three, new = merged["ports"]
    assert one == {
        "number": 1, "device": "/dev/ttyS1", "protocol": "dart", "poll_interval_ms": 150,
        "addresses": [3, 5], "baudrate": 9600, "bytesize": 8, "parity": "O", "stopbits": 1,
    }, "the old protocol's options went, the port's own keys stayed"  # fmt: skip
    assert (three["mode"], three["pos_device"]) == ("relay", "/dev/ttyS4"), "a relay stays one"
    assert (new["number"], new["device"], new["protocol"]) == (2, "/dev/ttyS9", "furen")
    assert [s["number"] for s in found] == [1, 3, 2]
    assert data["ports"][0]["protocol"] == "sinopec", "the input is not changed"


def test_write_merges_only_a_config_that_passes_the_check(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    store = tmp_path / "store.sqlite"
    config.write_text(DEMO.read_text().replace('".demo/store.sqlite"', f'"{store}"'))
    master, slave = os.openpty()
    try:
        device = os.ttyname(slave)
        before = config.read_text()
        with pytest.raises(WriteRefused) as refused:
            write_merged(config, [stanza(device, addresses=[40])])  # DART pumps are 1..32
        assert refused.value.lines == [
            "ports.1.addresses.0: protocol 'dart' addresses are 1..32, got 40"
        ], refused.value.lines
        assert config.read_text() == before, "a refused merge leaves the file as it was"
        text = write_merged(config, [stanza(device)])
        written = tomllib.loads(config.read_text())
        assert config.read_text() == text
        assert (tmp_path / "site.toml.prev").read_text() == before
        ports = {p["device"]: p for p in written["ports"]}
        assert ports[device]["protocol"] == "dart" and ports[device]["number"] == 2
        assert ports[".demo/pump1"]["protocol"] == "sinopec", "the other port is kept"
    finally:
        os.close(master)
        os.close(slave)
