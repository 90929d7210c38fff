"""Command checks (uplink.commands) and the first handlers (uplink.device_commands).

Issue #7, SPEC D8/D9: forged, expired, not-yet-valid, replayed (also after a
restart: a new ReplayLog on the same file), wrong-device, oversized and
malformed commands are refused with their code and counted; a valid one runs
exactly once; ``key.rotate`` persists the new key 0600 and seals with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from hil.platform.commands import command_body, seal_command, wrap_key
from uplink import commands as c
from uplink.crypto import sm2_generate
from uplink.device_commands import KeyRing, register_device_commands
from uplink.envelope import open_envelope, seal
from uplink.keys import load_keys

DEV = "dev-001"
KID = "k1"
KEY = bytes(range(16))
PLATFORM_PRIV, PLATFORM_PUB = sm2_generate()
DEVICE_PRIV, DEVICE_PUB = sm2_generate()


class Box:
    """A processor with a counting handler, on real files under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        key_file = tmp_path / "keys.toml"
        key_file.write_text(f'{KID} = "{KEY.hex()}"\n')
        key_file.chmod(0o600)
        self.ring = KeyRing(key_file, dict(load_keys(key_file)), KID)
        self.runs: list[dict[str, Any]] = []
        self.seq = 0
        self.open()

    def open(self) -> None:
        self.processor = c.CommandProcessor(
            device_id=DEV,
            platform_public=PLATFORM_PUB,
            keys=self.ring.keys,
            replay=c.ReplayLog(self.tmp / "replay.sqlite"),
            bucket=c.TokenBucket(1000.0, 1000),
        )

        async def echo(args: dict[str, Any]) -> dict[str, Any]:
            self.runs.append(args)
            return {"echo": args}

        self.processor.register("test.echo", echo)
        register_device_commands(
            self.processor, status=lambda: {"up": 1}, ring=self.ring, device_private=DEVICE_PRIV
        )

    def send(self, body: dict[str, Any], *, dev: str = DEV, kid: str = KID) -> dict[str, Any]:
        self.seq += 1
        payload = seal_command(body, dev=dev, kid=kid, key=self.ring.keys[kid], seq=self.seq)
        reply = asyncio.run(self.processor.handle(payload))
        assert reply is not None
        return reply


def signed(name: str = "test.echo", **kw: Any) -> dict[str, Any]:
    return command_body(
        name, kw.pop("args", {"n": 1}), private=PLATFORM_PRIV, public=PLATFORM_PUB, **kw
    )


def code(reply: dict[str, Any]) -> str:
    assert reply["ok"] is False, reply
    return str(reply["error"]["code"])


def test_valid_command_runs_once_and_replay_is_refused_across_restart(tmp_path: Path) -> None:
    box = Box(tmp_path)
    body = signed()
    reply = box.send(body)
    assert reply == {"id": body["id"], "ok": True, "result": {"echo": {"n": 1}}}
    assert code(box.send(body)) == c.REPLAYED
    box.processor.replay.close()
    box.open()  # the collector restarted: the seen ids are on disk
    assert code(box.send(body)) == c.REPLAYED
    assert box.runs == [{"n": 1}]
    assert box.processor.counters[c.REPLAYED] == 1


def test_forged_and_altered_commands_are_refused(tmp_path: Path) -> None:
    box = Box(tmp_path)
    other_priv, other_pub = sm2_generate()
    forged = command_body("test.echo", {}, private=other_priv, public=other_pub)
    assert code(box.send(forged)) == c.BAD_SIGNATURE
    altered = signed()
    altered["args"] = {"n": 2}
    assert code(box.send(altered)) == c.BAD_SIGNATURE
    unsigned = signed()
    del unsigned["sig"]
    assert code(box.send(unsigned)) == c.BAD_REQUEST
    assert box.runs == []
    assert box.processor.counters[c.BAD_SIGNATURE] == 2


def test_time_window(tmp_path: Path) -> None:
    box = Box(tmp_path)
    now = time.time_ns() // 1_000_000
    old = signed(issued_at=now - 3_600_000, lifetime_ms=60_000)
    assert code(box.send(old)) == c.EXPIRED
    future = signed(issued_at=now + 3_600_000)
    assert code(box.send(future)) == c.NOT_YET_VALID
    skewed = signed(issued_at=now + 60_000)  # within the skew allowance
    assert box.send(skewed)["ok"] is True
    too_long = signed(lifetime_ms=c.MAX_LIFETIME_MS + 1)
    assert code(box.send(too_long)) == c.BAD_REQUEST


def test_wrong_device_in_envelope_or_body(tmp_path: Path) -> None:
    box = Box(tmp_path)
    assert code(box.send(signed(), dev="dev-002")) == c.WRONG_DEVICE
    assert code(box.send(signed(dev="dev-002"))) == c.WRONG_DEVICE
    assert box.send(signed(dev=DEV))["ok"] is True


def test_size_envelope_type_unknown_and_rate(tmp_path: Path) -> None:
    box = Box(tmp_path)
    big = asyncio.run(box.processor.handle(b"{" * (c.MAX_COMMAND_BYTES + 1)))
    assert big is not None and code(big) == c.TOO_LARGE
    payload = bytearray(seal_command(signed(), dev=DEV, kid=KID, key=KEY, seq=99))
    payload[payload.rindex(b'"ct":"') + 8] ^= 0x01
    flipped = asyncio.run(box.processor.handle(bytes(payload)))
    assert flipped is not None and code(flipped) == c.BAD_ENVELOPE
    order = seal(signed(), dev=DEV, kid=KID, key=KEY, seq=100, ts_ms=1, type="order")
    wrong_type = asyncio.run(box.processor.handle(order))
    assert wrong_type is not None and code(wrong_type) == c.BAD_ENVELOPE
    assert code(box.send(signed("ota.nothing"))) == c.UNKNOWN_COMMAND
    box.processor.bucket = c.TokenBucket(0.0, 1, clock=lambda: 0.0)
    assert box.send(signed())["ok"] is True
    assert asyncio.run(box.processor.handle(payload)) is None
    assert box.processor.counters[c.RATE_LIMITED] == 1


def test_device_status(tmp_path: Path) -> None:
    box = Box(tmp_path)
    assert box.send(signed("ota.none"))["ok"] is False
    result = box.send(signed("device.status", args={}))["result"]
    assert result == {"up": 1, "commands": {c.UNKNOWN_COMMAND: 1}}


def test_key_rotate_persists_and_seals_with_new_key(tmp_path: Path) -> None:
    box = Box(tmp_path)
    new_key = os.urandom(16)
    body = signed("key.rotate", args={"kid": "k2", "key": wrap_key(DEVICE_PUB, new_key)})
    reply = box.send(body)
    assert reply["ok"] is True, reply
    assert reply["result"]["kid"] == "k2" and reply["result"]["previous_kid"] == KID
    assert new_key.hex() not in json.dumps(reply)
    key_file = tmp_path / "keys.toml"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_keys(key_file) == {KID: KEY, "k2": new_key}
    assert box.ring.current == "k2" and box.ring.current_key == new_key
    # the platform, given the new key, opens what the device now seals
    sealed = seal(
        {"x": "1"},
        dev=DEV,
        kid=box.ring.current,
        key=box.ring.current_key,
        seq=1,
        ts_ms=1,
        type="order",
    )
    assert open_envelope(sealed, {"k2": new_key}).body == {"x": "1"}
    # the old key still opens commands during the grace period
    assert box.send(signed(), kid=KID)["ok"] is True
    # after a restart the marker file wins over the config's kid
    assert KeyRing.current_kid(key_file, KID, load_keys(key_file)) == "k2"
    assert (tmp_path / "keys.toml.current").read_text() == "k2\n"


def test_key_rotate_refuses_a_key_not_for_this_device(tmp_path: Path) -> None:
    box = Box(tmp_path)
    _, other_pub = sm2_generate()
    wrapped = wrap_key(other_pub, os.urandom(16))
    reply = box.send(signed("key.rotate", args={"kid": "k2", "key": wrapped}))
    assert code(reply) == "BAD_KEY"
    bad = base64.b64encode(b"short").decode()
    assert code(box.send(signed("key.rotate", args={"kid": "k2", "key": bad}))) == "BAD_KEY"
    assert box.ring.current == KID and load_keys(tmp_path / "keys.toml") == {KID: KEY}


def test_replay_log_is_bounded(tmp_path: Path) -> None:
    log = c.ReplayLog(tmp_path / "r.sqlite")
    assert log.remember("a", keep_until_ms=100, now_ms=0)
    assert not log.remember("a", keep_until_ms=100, now_ms=50)
    assert log.remember("b", keep_until_ms=1000, now_ms=200)  # prunes "a"
    assert len(log) == 1


def test_token_bucket() -> None:
    now = [0.0]
    bucket = c.TokenBucket(2.0, 2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert bucket.take() and not bucket.take()
