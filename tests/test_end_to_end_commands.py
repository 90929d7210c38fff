"""Commands end to end: platform → mosquitto → collector → reply → receiver.

Real parts: a dispenser simulator on a pty, the collector process with its own
provisioned keys (0600 files), mosquitto, the reference receiver. A valid
command runs once; forged, expired, wrong-device and replayed commands (also
after a collector restart) are refused with their codes; ``key.rotate`` makes
the device seal with the new kid, which a receiver holding only the new key
opens.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil import stack
from hil.platform.commands import (
    command_body,
    publish_command,
    seal_command,
    seal_command_text,
    wrap_key,
)
from hil.stack import Mosquitto, Proc
from uplink.crypto import sm2_generate, sm2_sign

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEV = "demo-gw-01"
K1, K2 = bytes(range(16)), os.urandom(16)


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class Box:
    work: Path
    broker: Mosquitto
    link: Path
    platform: tuple[str, str]
    device: tuple[str, str]
    receiver: Proc
    procs: list[Proc] = field(default_factory=list)
    seq: int = 0

    def start_collector(self) -> Proc:
        name = f"collector{len(self.procs)}"
        proc = stack.collector(
            self.work,
            DEMO_CONFIG,
            [
                f"store.path={self.work / 'store.sqlite'}",
                f"ports.0.device={self.link}",
                f"uplink.port={self.broker.port}",
                f"uplink.keys_file={self.work / 'keys.toml'}",
                "uplink.kid=k1",
                f"uplink.device_key_file={self.work / 'device-sm2.toml'}",
                f"uplink.platform_public_key_file={self.work / 'platform.pub.toml'}",
                "uplink.reconnect_min_s=0.2",
                "uplink.reconnect_max_s=1.0",
                # Never step this machine's clock from a test: measure only.
                "clock.step_threshold_ms=86400000",
                "clock.alarm_threshold_ms=2000",
                "log.format=json",
            ],
            name,
        )
        self.procs.append(proc)
        stack.wait_until(
            lambda: "commands_subscribed" in proc.log_path.read_text(), 30, "down/cmd subscribed"
        )
        return proc

    def send(self, body: dict[str, Any], key: bytes = K1, kid: str = "k1") -> None:
        self.seq += 1
        payload = seal_command(body, dev=DEV, kid=kid, key=key, seq=self.seq)
        asyncio.run(publish_command("127.0.0.1", self.broker.port, DEV, payload))

    def signed(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        private, public = self.platform
        return command_body(name, args, private=private, public=public, **kw)

    def reply(self, rx: Proc, command_id: str) -> dict[str, Any]:
        lines = rx.wait_lines(
            lambda line: line.get("type") == "reply" and line["record"]["id"] == command_id, 1, 30
        )
        record: dict[str, Any] = lines[0]["record"]
        return record


@pytest.fixture
def box(tmp_path: Path, broker: Mosquitto) -> Iterator[Box]:
    platform, device = sm2_generate(), sm2_generate()
    secret(tmp_path / "keys.toml", f'k1 = "{K1.hex()}"\n')
    secret(tmp_path / "device-sm2.toml", f'private = "{device[0]}"\npublic = "{device[1]}"\n')
    (tmp_path / "platform.pub.toml").write_text(f'public = "{platform[1]}"\n')
    rx_keys = secret(tmp_path / "rx-keys.toml", f'k1 = "{K1.hex()}"\nk2 = "{K2.hex()}"\n')
    receiver = stack.receiver(tmp_path, broker.port, rx_keys, client_id=f"rx-{tmp_path.name}")
    link = tmp_path / "pump1"
    dispenser = stack.dispenser(tmp_path, link, orders=6, nozzles=2, rate=4, seed=3)
    b = Box(tmp_path, broker, link, platform, device, receiver, [receiver, dispenser])
    try:
        yield b
    finally:
        for proc in reversed(b.procs):
            proc.stop()


def code(reply: dict[str, Any]) -> str:
    assert reply["ok"] is False, reply
    return str(reply["error"]["code"])


def test_commands_are_checked_end_to_end(box: Box) -> None:
    collector = box.start_collector()
    rx = box.receiver
    valid = box.signed("device.status")
    box.send(valid)
    status = box.reply(rx, valid["id"])
    assert status["ok"] is True
    # Which release bundles fit this device (collector/ota/fit.py).
    assert status["result"]["bundle"] == {
        "platform": sysconfig.get_platform(),
        "python": f"cp{sys.version_info.major}{sys.version_info.minor}",
    }
    other = sm2_generate()
    forged = command_body("device.status", None, private=other[0], public=other[1])
    box.send(forged)
    assert code(box.reply(rx, forged["id"])) == "BAD_SIGNATURE"
    now = time.time_ns() // 1_000_000
    expired = box.signed("device.status", issued_at=now - 3_600_000, lifetime_ms=60_000)
    box.send(expired)
    assert code(box.reply(rx, expired["id"])) == "EXPIRED"
    elsewhere = box.signed("device.status", dev="another-gw")
    box.send(elsewhere)
    assert code(box.reply(rx, elsewhere["id"])) == "WRONG_DEVICE"
    box.send(valid)
    replies = rx.wait_lines(
        lambda line: line.get("type") == "reply" and line["record"]["id"] == valid["id"], 2, 30
    )
    assert [r["record"]["ok"] for r in replies] == [True, False]
    assert replies[1]["record"]["error"]["code"] == "REPLAYED"

    # restart: the seen ids survive; the replay is still refused
    assert collector.stop() == 0
    box.start_collector()
    box.send(valid)
    replies = rx.wait_lines(
        lambda line: line.get("type") == "reply" and line["record"]["id"] == valid["id"], 3, 30
    )
    assert replies[2]["record"]["error"]["code"] == "REPLAYED"

    # key.rotate: the device now seals with k2; a receiver holding only k2 opens it
    rotate = box.signed("key.rotate", {"kid": "k2", "key": wrap_key(box.device[1], K2)})
    box.send(rotate)
    result = box.reply(rx, rotate["id"])
    assert result["ok"] is True and result["result"]["previous_kid"] == "k1", result
    only_k2 = secret(box.work / "k2-only.toml", f'k2 = "{K2.hex()}"\n')
    rx2 = stack.receiver(box.work, box.broker.port, only_k2, client_id=f"rx2-{box.work.name}")
    box.procs.append(rx2)
    after = box.signed("device.status")
    box.send(after)  # sealed with k1 still opens during the grace period
    assert box.reply(rx2, after["id"])["ok"] is True


def test_orders_resend_publishes_the_selection_again(box: Box) -> None:
    """``orders.resend`` (SPEC D5, D6): exactly the selected orders come back with
    ``resent: true``, the same rid, nseq and hash; a bad argument is refused."""
    box.start_collector()
    rx = box.receiver
    first = rx.wait_lines(lambda line: line.get("type") == "order", 6, 60)
    nozzle = first[0]["record"]["nozzle"]
    mine = sorted(
        (x["record"] for x in first if x["record"]["nozzle"] == nozzle), key=lambda r: r["nseq"]
    )
    command = box.signed("orders.resend", {"nozzle": nozzle, "from_nseq": 1, "to_nseq": 2})
    box.send(command)
    reply = box.reply(rx, command["id"])
    assert reply["ok"] is True and reply["result"] == {"marked": min(2, len(mine))}, reply
    # The receiver deduplicates on rid: it counts the copies as duplicates, so
    # look at the raw resent records through a second, fresh receiver.
    rx2 = stack.receiver(box.work, box.broker.port, box.work / "rx-keys.toml", client_id="rx-fresh")
    box.procs.append(rx2)
    again = box.signed("orders.resend", {"nozzle": nozzle, "to_nseq": 1})
    box.send(again)
    assert box.reply(rx, again["id"])["result"] == {"marked": 1}
    resent = rx2.wait_lines(lambda line: line.get("type") == "order", 1, 30)
    (copy,) = [x["record"] for x in resent]
    original = mine[0]
    assert copy["resent"] is True and original["resent"] is False
    assert {k: v for k, v in copy.items() if k != "resent"} == {
        k: v for k, v in original.items() if k != "resent"
    }
    bad = box.signed("orders.resend", {"nozzle": nozzle, "since": "yesterday"})
    box.send(bad)
    assert code(box.reply(rx, bad["id"])) == "BAD_REQUEST"
    unknown = box.signed("orders.resend", {"everything": True})
    box.send(unknown)
    assert code(box.reply(rx, unknown["id"])) == "BAD_REQUEST"


def test_time_sync_measures_the_offset_and_raises_clock_drift(box: Box) -> None:
    """D16: the reply and the heartbeat carry the offset; 30 s off is CLOCK_DRIFT.
    (Stepping the clock is tested on an injected clock: tests/test_clock.py.)"""
    box.start_collector()
    rx = box.receiver
    ahead_ms = 30_000
    command = box.signed("time.sync", {"platform_ts": time.time_ns() // 1_000_000 + ahead_ms})
    box.send(command)
    reply = box.reply(rx, command["id"])
    assert reply["ok"] is True and reply["result"]["stepped"] is False, reply
    offset = reply["result"]["offset_ms"]
    assert ahead_ms - 5_000 < offset <= ahead_ms, "the transit is inside the offset"
    (drift,) = rx.wait_lines(
        lambda line: line.get("type") == "alarm" and line["record"]["code"] == "CLOCK_DRIFT", 1, 30
    )
    assert drift["record"]["detail"] == {"offset_ms": offset, "stepped": False}
    status = box.signed("device.status")
    box.send(status)
    assert box.reply(rx, status["id"])["result"]["clock_offset_ms"] == offset
    bad = box.signed("time.sync", {"platform_ts": "noon"})
    box.send(bad)
    assert code(box.reply(rx, bad["id"])) == "BAD_REQUEST"


def test_device_restart_replies_then_stops_for_systemd_to_start_it(box: Box) -> None:
    """D8: the reply reaches the platform first; the collector then stops cleanly
    with 75, on which the unit restarts it (RestartForceExitStatus=75)."""
    collector = box.start_collector()
    command = box.signed("device.restart")
    box.send(command)
    reply = box.reply(box.receiver, command["id"])
    assert reply["ok"] is True and reply["result"]["restarting"] is True
    assert collector.popen.wait(30) == 75
    assert (
        "RestartForceExitStatus=75"
        in (stack.ROOT / "systemd" / "forecourt-collector.service").read_text()
    )
    box.start_collector()  # what systemd does next: it starts and takes commands again
    status = box.signed("device.status")
    box.send(status)
    assert box.reply(box.receiver, status["id"])["ok"] is True


def test_config_get_returns_the_running_config_without_secrets(box: Box) -> None:
    """D8 / D9: the platform reads the running config; no secret is in it."""
    box.start_collector()
    command = box.signed("config.get")
    box.send(command)
    reply = box.reply(box.receiver, command["id"])
    assert reply["ok"] is True, reply
    config = reply["result"]["config"]
    assert config["device"]["id"] == DEV and config["ports"][0]["device"] == str(box.link)
    assert config["uplink"]["heartbeat_s"] == "10.0", "floats travel as decimal strings"
    text = json.dumps(config)
    assert K1.hex() not in text and box.device[0] not in text


def signed_text(box: Box, command_id: str, args: str) -> bytes:
    """``device.status`` with ``args`` as raw JSON, signed over that text the
    way a careless platform would (its own JSON, not canonical: a float, a
    lone surrogate)."""
    now = time.time_ns() // 1_000_000
    unsigned = (
        f'{{"args":{args},"expires_at":{now + 60_000},"id":"{command_id}",'
        f'"issued_at":{now},"name":"device.status"}}'
    )
    sig = sm2_sign(box.platform[0], box.platform[1], unsigned.encode())
    return (unsigned[:-1] + f',"sig":"{sig}"}}').encode()


def test_junk_never_starves_a_valid_command_and_unreadable_bodies_are_answered(
    box: Box,
) -> None:
    """A dozen messages on down/cmd that do not authenticate, then a valid
    command: it runs. A signed body holding a float or a lone surrogate gets
    a BAD_REQUEST reply naming why, never ``command_failed``. The refusals
    cost a log line per code, and ``forecourt status`` counts them."""
    from collector.tools.techcli import ask

    collector = box.start_collector()
    rx = box.receiver
    sealed = bytearray(seal_command(box.signed("device.status"), dev=DEV, kid="k1", key=K1, seq=1))
    sealed[sealed.rindex(b'"ct":"') + 8] ^= 0x01
    other_key = seal_command(box.signed("device.status"), dev=DEV, kid="k1", key=K2, seq=2)
    junk = [b"not json", b"{}", bytes(sealed), other_key] * 3

    async def publish_all(payloads: list[bytes]) -> None:
        for payload in payloads:
            await publish_command("127.0.0.1", box.broker.port, DEV, payload)

    valid = box.signed("device.status")
    asyncio.run(publish_all(junk))
    box.send(valid)
    assert box.reply(rx, valid["id"])["ok"] is True, "the junk used none of its budget"

    floats = signed_text(box, "cmd-float", '{"litres":1.5}')
    surrogate = signed_text(box, "cmd-\\ud800", "{}")
    bad = (floats, surrogate)
    asyncio.run(publish_all([seal_command_text(t, dev=DEV, kid="k1", key=K1, seq=9) for t in bad]))
    reply = box.reply(rx, "cmd-float")
    assert code(reply) == "BAD_REQUEST" and "float at $.args.litres" in reply["error"]["message"]
    (reply,) = rx.wait_lines(
        lambda line: (
            line.get("type") == "reply"
            and "lone surrogate at $.id" in json.dumps(line["record"].get("error"))
        ),
        1,
        30,
    )
    assert reply["record"]["id"] is None and code(reply["record"]) == "BAD_REQUEST"

    status = ask(str(box.work / "control.sock"), {"query": "status"})["data"]
    refused = status["log"]["command_refused"]
    assert refused["kinds"] == {"BAD_ENVELOPE": 12, "BAD_REQUEST": 2}, refused
    lines = [json.loads(t) for t in collector.log_path.read_text().splitlines() if t[:1] == "{"]
    assert not [line for line in lines if line["event"] == "command_failed"]
    logged = [line["kind"] for line in lines if line["event"] == "command_refused"]
    assert sorted(logged) == ["BAD_ENVELOPE", "BAD_REQUEST"], "one line per code a minute"
    assert refused["lines"] == 2


def test_evidence_fetch_gives_back_the_line_the_orders_came_from(box: Box) -> None:
    """``evidence.fetch`` through the broker: the parts (replies under the
    command's id, sealed like every message) decode, chain intact, to exactly
    the orders the platform received from that port in the period."""
    from collector.station.evidence_io import decode_evidence

    start_ms = time.time_ns() // 1_000_000 - 1000
    box.start_collector()
    rx = box.receiver
    orders = [x["record"] for x in rx.wait_lines(lambda line: line.get("type") == "order", 6, 60)]
    command = box.signed(
        "evidence.fetch", {"port": 1, "from": start_ms, "to": time.time_ns() // 1_000_000}
    )
    box.send(command)

    def of_command(line: dict[str, Any]) -> bool:
        return line.get("type") == "reply" and line["record"]["id"] == command["id"]

    (done,) = rx.wait_lines(lambda x: of_command(x) and "parts" in x["record"]["result"], 1, 30)
    summary = done["record"]["result"]
    parts = [
        x["record"] for x in rx.snapshot() if of_command(x) and "evidence" in x["record"]["result"]
    ]
    assert summary["parts"] == len(parts) >= 1, summary
    status, lines = decode_evidence([json.dumps(p) for p in parts], None)
    assert status == 0 and lines[0]["chain"] == "ok", lines[0]
    read = {
        (x["values"]["order_no"], x["values"]["amount"])
        for x in lines
        if x.get("message") == "record"
    }
    assert read == {(o["order_no"], o["amount"]) for o in orders}
