"""Command checks (uplink.commands) and the first handlers (uplink.device_commands).

SPEC D8/D9: forged, expired, not-yet-valid, replayed (also after a
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

import pytest

from hil.platform.commands import command_body, seal_command, wrap_key
from uplink import commands as c
from uplink.crypto import sm2_generate, sm2_sign
from uplink.device_commands import KeyRing, register_device_commands
from uplink.envelope import canonical_json, open_envelope, seal
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
    over = seal_command(signed(), dev=DEV, kid=KID, key=KEY, seq=101)
    assert asyncio.run(box.processor.handle(over)) is None
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


def seal_text(text: str | bytes, seq: int) -> bytes:
    """A ``down/cmd`` payload whose body is ``text`` exactly (JSON our own
    canonical_json would never write: floats, lone surrogates, duplicates)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    return seal(raw, dev=DEV, kid=KID, key=KEY, seq=seq, ts_ms=1, type="cmd")


def signed_text(extra: str, command_id: str = "cmd-1", args: str = '{"n":1}') -> str:
    """A body signed the way a careless platform would sign it: over its own
    JSON (sorted keys, no spaces), which is not canonical when it holds a
    float or a lone surrogate."""
    now = time.time_ns() // 1_000_000
    unsigned = (
        f'{{"args":{args},"expires_at":{now + 60_000},"id":"{command_id}",'
        f'"issued_at":{now},"name":"test.echo"{extra}}}'
    )
    sig = sm2_sign(PLATFORM_PRIV, PLATFORM_PUB, unsigned.encode("utf-8"))
    return unsigned[:-1] + f',"sig":"{sig}"}}'


@pytest.mark.parametrize(
    ("text", "reply_id", "why"),
    [
        (signed_text("", args='{"n":1.5}'), "cmd-1", "float at $.args.n"),
        (signed_text(',"x":1e400'), "cmd-1", "float at $.x"),
        (signed_text(',"z":-0.0'), "cmd-1", "float at $.z"),
        (signed_text("", args='{"n":"\\ud800"}'), "cmd-1", "lone surrogate at $.args.n"),
        (signed_text("", args='{"\\udfff":1}'), "cmd-1", "lone surrogate in the key $.args."),
        (signed_text("", command_id="a\\ud800b"), None, "lone surrogate at $.id"),
        (signed_text("", args="[" * 40 + "]" * 40), "cmd-1", "nested deeper than 32"),
        ('{"id":"cmd-1","id":"cmd-2"}', None, "duplicate key 'id'"),
        ('{"id":"cmd-1","n":NaN}', None, "NaN is not JSON"),
        ("[1, 2]", None, "not a JSON object"),
        (b'{"id":"\xff"}', None, "not UTF-8 JSON: 'utf-8' codec can't decode byte 0xff"),
    ],
)
def test_a_body_that_does_not_parse_or_canonicalise_gets_a_reply_naming_why(
    tmp_path: Path, text: str | bytes, reply_id: str | None, why: str
) -> None:
    box = Box(tmp_path)
    refused: list[tuple[str, str | None, str, bool]] = []
    box.processor.on_refused = lambda *args: refused.append(args)
    reply = asyncio.run(box.processor.handle(seal_text(text, 1)))
    assert reply is not None and reply["id"] == reply_id, reply
    assert code(reply) == c.BAD_REQUEST and why in reply["error"]["message"], reply
    canonical_json(reply)  # what storing the reply does: it cannot fail
    assert box.runs == [] and box.processor.counters == {c.BAD_REQUEST: 1}
    assert refused == [(c.BAD_REQUEST, reply_id, reply["error"]["message"], True)]


def test_a_result_that_is_not_canonical_is_an_internal_reply(tmp_path: Path) -> None:
    box = Box(tmp_path)

    async def sloppy(args: dict[str, Any]) -> dict[str, Any]:
        return {"litres": 1.5}

    box.processor.register("test.sloppy", sloppy)
    reply = box.send(signed("test.sloppy"))
    assert code(reply) == c.INTERNAL and "float at $.result.litres" in reply["error"]["message"]
    canonical_json(reply)


def test_junk_on_the_topic_cannot_starve_a_valid_command(tmp_path: Path) -> None:
    """The real buckets (2/s, burst 5) on a frozen clock: a dozen envelopes
    that do not authenticate use none of the command budget, and get a
    reply only within their own burst."""
    box = Box(tmp_path)
    frozen = lambda: 0.0  # noqa: E731 - nothing refills during the test
    box.processor.bucket = c.TokenBucket(c.VERIFY_RATE_PER_S, c.VERIFY_BURST, clock=frozen)
    box.processor.unauthenticated_replies = c.TokenBucket(
        c.UNAUTHENTICATED_REPLY_RATE_PER_S, c.UNAUTHENTICATED_REPLY_BURST, clock=frozen
    )
    body = signed()
    good = seal_command(body, dev=DEV, kid=KID, key=KEY, seq=1)
    flipped = bytearray(good)
    flipped[flipped.rindex(b'"ct":"') + 8] ^= 0x01
    junk = [
        b"not json",
        b"{" * (c.MAX_COMMAND_BYTES + 1),
        bytes(flipped),
        seal_command(signed(), dev=DEV, kid=KID, key=os.urandom(16), seq=2),  # another key
        seal_command(signed(), dev="dev-002", kid=KID, key=KEY, seq=3),  # another device
        seal_command(signed(), dev=DEV, kid="k9", key=KEY, seq=4),  # a kid we do not hold
    ] * 2
    replies = [asyncio.run(box.processor.handle(p)) for p in junk]
    answered = [r for r in replies if r is not None]
    assert len(answered) == c.UNAUTHENTICATED_REPLY_BURST, replies
    assert all(r["id"] is None and r["ok"] is False for r in answered)
    reply = asyncio.run(box.processor.handle(good))
    assert reply == {"id": body["id"], "ok": True, "result": {"echo": {"n": 1}}}
    counters = box.processor.counters
    assert counters[c.UNANSWERED] == len(junk) - c.UNAUTHENTICATED_REPLY_BURST
    assert counters[c.RATE_LIMITED] == 0 and counters[c.OK] == 1


def test_envelopes_that_authenticate_are_what_the_rate_charges(tmp_path: Path) -> None:
    """Over the burst, authenticated commands — valid or not — are dropped
    unanswered; an unauthenticated one still gets its own budget's reply."""
    box = Box(tmp_path)
    box.processor.bucket = c.TokenBucket(c.VERIFY_RATE_PER_S, c.VERIFY_BURST, clock=lambda: 0.0)
    bad_body = seal_text(signed_text("", args='{"n":0.1}'), 1)
    assert code(asyncio.run(box.processor.handle(bad_body)) or {}) == c.BAD_REQUEST
    payloads = [seal_command(signed(), dev=DEV, kid=KID, key=KEY, seq=n) for n in range(2, 8)]
    replies = [asyncio.run(box.processor.handle(p)) for p in payloads]
    assert [r is not None and r["ok"] for r in replies] == [True] * 4 + [False] * 2
    assert replies[-2:] == [None, None] and box.processor.counters[c.RATE_LIMITED] == 2
    unauthenticated = asyncio.run(box.processor.handle(b"junk"))
    assert unauthenticated is not None and code(unauthenticated) == c.BAD_ENVELOPE
