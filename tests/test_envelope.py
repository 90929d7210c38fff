"""The sealed envelope: round trips, the AAD's exact form, and every rejection code."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import pytest

from uplink import envelope
from uplink.crypto import sm4_gcm_open, sm4_gcm_seal
from uplink.envelope import (
    MAX_PLAINTEXT_BYTES,
    EnvelopeError,
    aad,
    canonical_json,
    open_envelope,
    seal,
)

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))
KEYS = {"k1": KEY}
DEV = "gw-01"
TS = 1_763_800_000_123
BODY: dict[str, Any] = {
    "items": [
        {"rid": "p01.a1.n1:1", "station": "中石化 92#站", "volume": "30.12", "nseq": 1},
        {"rid": "p01.a1.n1:2", "station": "中石化 92#站", "volume": "7.00", "nseq": 2},
    ]
}


def _seal(zip: str = "deflate", **overrides: Any) -> bytes:
    args: dict[str, Any] = dict(dev=DEV, kid="k1", key=KEY, seq=7, ts_ms=TS, type="order", zip=zip)
    args.update(overrides)
    return seal(BODY, **args)


def _edit(payload: bytes, **fields: Any) -> bytes:
    env = json.loads(payload)
    env.update(fields)
    return json.dumps(env).encode()


def _drop(payload: bytes, name: str) -> bytes:
    env = json.loads(payload)
    del env[name]
    return json.dumps(env).encode()


def _forge(plaintext: bytes, zip: str = "deflate") -> bytes:
    """A correctly sealed envelope around an arbitrary plaintext (what a bad sender could send)."""
    nonce = bytes(12)
    ct = sm4_gcm_seal(KEY, nonce, plaintext, aad(1, DEV, "k1", 1, TS, "order", zip))
    env = {"v": 1, "dev": DEV, "kid": "k1", "seq": 1, "ts": TS, "type": "order", "zip": zip}
    env |= {"nonce": base64.b64encode(nonce).decode(), "ct": base64.b64encode(ct).decode()}
    return json.dumps(env).encode()


def _code(payload: bytes, keys: dict[str, bytes] = KEYS, topic_dev: str | None = None) -> str:
    with pytest.raises(EnvelopeError) as info:
        open_envelope(payload, keys, topic_dev=topic_dev)
    return info.value.code


# --- round trips and the wire form --------------------------------------------


@pytest.mark.parametrize("zip", ["deflate", "none"])
def test_round_trip(zip: str) -> None:
    opened = open_envelope(_seal(zip), KEYS, topic_dev=DEV)
    assert opened == envelope.Opened(
        v=1, dev=DEV, kid="k1", seq=7, ts=TS, type="order", zip=zip, body=BODY
    )


def test_the_wire_form() -> None:
    env = json.loads(_seal())
    assert list(env) == ["v", "dev", "kid", "seq", "ts", "type", "zip", "nonce", "ct"]
    assert env | {"nonce": None, "ct": None} == {
        "v": 1,
        "dev": DEV,
        "kid": "k1",
        "seq": 7,
        "ts": TS,
        "type": "order",
        "zip": "deflate",
        "nonce": None,
        "ct": None,
    }
    assert len(base64.b64decode(env["nonce"])) == 12
    assert b" " not in _seal()


def test_aad_is_the_exact_ascii_string() -> None:
    assert aad(1, "gw-01", "k1", 7, TS, "order", "deflate") == (
        b"1|gw-01|k1|7|1763800000123|order|deflate"
    )


@pytest.mark.parametrize("zip", ["deflate", "none"])
def test_seal_uses_that_aad_and_canonical_plaintext(zip: str) -> None:
    env = json.loads(_seal(zip))
    plaintext = sm4_gcm_open(
        KEY,
        base64.b64decode(env["nonce"]),
        base64.b64decode(env["ct"]),
        f"1|{DEV}|k1|7|{TS}|order|{zip}".encode("ascii"),
    )
    if zip == "deflate":
        plaintext = zlib.decompress(plaintext, wbits=-15)  # raw DEFLATE, no header
    assert plaintext == canonical_json(BODY)


def test_every_seal_has_a_fresh_nonce() -> None:
    nonces = {json.loads(_seal())["nonce"] for _ in range(20)}
    assert len(nonces) == 20


def test_deflate_shrinks_a_batch() -> None:
    body = {"items": [dict(BODY["items"][0], nseq=i) for i in range(100)]}
    small = seal(body, dev=DEV, kid="k1", key=KEY, seq=1, ts_ms=TS, type="order")
    large = seal(body, dev=DEV, kid="k1", key=KEY, seq=1, ts_ms=TS, type="order", zip="none")
    assert len(small) * 4 < len(large)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"zip": "gzip"}, "envelope zip must be one of ['deflate', 'none'], got 'gzip'"),
        ({"dev": "a|b"}, "envelope dev 'a|b' must be 1-64 printable ASCII, no '|'"),
        ({"kid": ""}, "envelope kid '' must be 1-64 printable ASCII, no '|'"),
        ({"type": "or der"}, "envelope type 'or der' must be 1-64 printable ASCII, no '|'"),
        ({"seq": -1}, "envelope seq must be an integer in 0..2^53-1"),
        ({"ts_ms": True}, "envelope ts_ms must be an integer in 0..2^53-1"),
    ],
)
def test_seal_refuses_bad_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        _seal(**overrides)
    assert str(info.value) == message


# --- the AAD binds every header field -------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dev", "gw-02"),
        ("kid", "k2"),  # k2 holds the same key: only the AAD can tell
        ("seq", 8),
        ("ts", TS + 1),
        ("type", "tank"),
        ("zip", "none"),
        ("v", 2),  # accepted below by a receiver that knows v2 too
    ],
)
def test_changing_a_header_field_fails_the_tag(
    monkeypatch: pytest.MonkeyPatch, field: str, value: Any
) -> None:
    monkeypatch.setattr(envelope, "SUPPORTED_VERSIONS", frozenset({1, 2}))
    keys = {"k1": KEY, "k2": KEY}
    assert open_envelope(_seal(), keys).seq == 7
    assert _code(_edit(_seal(), **{field: value}), keys) == "bad_tag"


def test_zip_none_changed_to_deflate_fails_the_tag() -> None:
    assert _code(_edit(_seal("none"), zip="deflate")) == "bad_tag"


def test_the_wrong_key_or_altered_ciphertext_fails_the_tag() -> None:
    assert _code(_seal(), {"k1": OTHER_KEY}) == "bad_tag"
    ct = bytearray(base64.b64decode(json.loads(_seal())["ct"]))
    ct[3] ^= 0x40
    assert _code(_edit(_seal(), ct=base64.b64encode(ct).decode())) == "bad_tag"


# --- rejection codes ---------------------------------------------------------


def test_dev_must_match_the_topic() -> None:
    with pytest.raises(EnvelopeError) as info:
        open_envelope(_seal(), KEYS, topic_dev="gw-02")
    assert info.value.code == "dev_mismatch"
    assert str(info.value) == "dev 'gw-01' differs from the topic's 'gw-02'"


def test_an_unknown_kid() -> None:
    with pytest.raises(EnvelopeError) as info:
        open_envelope(_seal(kid="k9"), KEYS)
    assert (info.value.code, str(info.value)) == ("unknown_kid", "no key for kid 'k9'")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"text"',
        b'{"v": 1, "v": 1}',
        b'{"v": NaN}',
        b"[" * 100_000,
    ],
)
def test_bad_json(payload: bytes) -> None:
    assert _code(payload) == "bad_json"


def test_a_duplicated_header_key_is_bad_json() -> None:
    payload = _seal()
    forged = payload.replace(b'"dev":', b'"dev":"gw-02","dev":', 1)
    assert _code(forged) == "bad_json"


@pytest.mark.parametrize("name", ["v", "dev", "kid", "seq", "ts", "type", "zip", "nonce", "ct"])
def test_a_missing_field_is_bad_field(name: str) -> None:
    assert _code(_drop(_seal(), name)) == "bad_field"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2),
        ("v", "1"),
        ("v", True),
        ("seq", "7"),
        ("seq", -7),
        ("seq", 7.0),
        ("seq", 2**53),
        ("ts", False),
        ("dev", 5),
        ("dev", "gw|01"),
        ("kid", ""),
        ("type", "x" * 65),
        ("zip", "gzip"),
        ("nonce", "AAAA"),
        ("nonce", "not base64!"),
        ("ct", "AAAA"),
        ("ct", None),
    ],
)
def test_an_ill_typed_field_is_bad_field(field: str, value: Any) -> None:
    assert _code(_edit(_seal(), **{field: value})) == "bad_field"


def test_bad_field_is_checked_before_dev_and_kid() -> None:
    assert _code(_edit(_seal(kid="k9"), seq="x"), topic_dev="other") == "bad_field"


def test_a_deflate_bomb_is_bad_zip() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"\x00" * (MAX_PLAINTEXT_BYTES + 1)) + deflater.flush()
    assert len(bomb) < 8 * 1024
    with pytest.raises(EnvelopeError) as info:
        open_envelope(_forge(bomb), KEYS)
    assert (info.value.code, str(info.value)) == ("bad_zip", "inflates to over 4194304 bytes")


def test_a_body_of_exactly_the_limit_opens() -> None:
    padding = MAX_PLAINTEXT_BYTES - len(b'{"a":""}')
    plaintext = b'{"a":"' + b"x" * padding + b'"}'
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = deflater.compress(plaintext) + deflater.flush()
    opened = open_envelope(_forge(packed), KEYS)
    assert len(opened.body["a"]) == padding


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"\xff\xff\xff", "not a raw DEFLATE stream"),
        (zlib.compress(b'{"a":1}'), "not a raw DEFLATE stream"),  # zlib header: not raw
        (zlib.compressobj(9, zlib.DEFLATED, -15).compress(b"{}"), "truncated"),
    ],
)
def test_a_broken_deflate_stream_is_bad_zip(stream: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        open_envelope(_forge(stream), KEYS)
    assert info.value.code == "bad_zip"
    assert message in str(info.value)


def test_bytes_after_the_deflate_stream_are_bad_zip() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = deflater.compress(b"{}") + deflater.flush() + b"junk"
    with pytest.raises(EnvelopeError) as info:
        open_envelope(_forge(stream), KEYS)
    assert (info.value.code, str(info.value)) == (
        "bad_zip",
        "bytes after the end of the DEFLATE stream",
    )


@pytest.mark.parametrize("plaintext", [b"not json", b"[1]", b"\xff{}", b'{"a":1,"a":2}'])
def test_a_bad_body_is_bad_body(plaintext: bytes) -> None:
    assert _code(_forge(plaintext, zip="none")) == "bad_body"


# --- canonical JSON ----------------------------------------------------------


def test_canonical_json_exact_bytes() -> None:
    obj = {
        "é": "x",
        "b": [1, {"z": None, "a": True, "m": []}],
        "a": "中石化 92#",
        "c": {"y": "30.12", "x": -5},
    }
    expected = (
        '{"a":"中石化 92#","b":[1,{"a":true,"m":[],"z":null}],"c":{"x":-5,"y":"30.12"},"é":"x"}'
    )
    assert canonical_json(obj) == expected.encode("utf-8")


def test_canonical_json_does_not_depend_on_insertion_order() -> None:
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1}) == b'{"a":2,"b":1}'


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"volume": 30.12}, "$.volume"),
        ({"items": [{"price": 7.0}]}, "$.items[0].price"),
        ([1, float("nan")], "$[1]"),
    ],
)
def test_canonical_json_refuses_floats(obj: Any, where: str) -> None:
    with pytest.raises(TypeError) as info:
        canonical_json(obj)
    assert str(info.value) == f"canonical_json: float at {where}; use a decimal string"


def test_canonical_json_refuses_non_string_keys_and_seal_refuses_floats() -> None:
    with pytest.raises(TypeError, match="non-string key 1 at"):
        canonical_json({1: "a"})
    with pytest.raises(TypeError, match="float at"):
        seal({"v": 1.5}, dev=DEV, kid="k1", key=KEY, seq=1, ts_ms=TS, type="order")
