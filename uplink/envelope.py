"""The sealed envelope of platform-interface.md v1, and canonical JSON.

Sender side: :func:`seal`. Receiver side: :func:`open_envelope`, which
checks, in this order, JSON, fields, ``dev`` against the topic, ``kid``, the
tag, the deflate stream and the body, and names the first failure with a
precise :class:`EnvelopeError` code. Replay (``seq`` already accepted) is
the receiver's business: it needs state this module does not keep.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from records.canonical import canonical_json
from uplink.crypto import NONCE_BYTES, TAG_BYTES, AuthenticationFailed, new_nonce
from uplink.crypto import sm4_gcm_open as _gcm_open
from uplink.crypto import sm4_gcm_seal as _gcm_seal

ENVELOPE_VERSION = 1

#: Versions :func:`open_envelope` accepts. A later receiver adds the next one
#: here while devices in the field upgrade at their own pace.
SUPPORTED_VERSIONS = frozenset({ENVELOPE_VERSION})

ZIP_MODES = frozenset({"deflate", "none"})

#: Largest plaintext (the body's JSON after inflating) either side accepts.
#: A batch of 100 orders is about 60 KiB, so this is ample; on the receiving
#: side it bounds inflate, which protects against a deflate bomb (a few KiB
#: of ciphertext that inflate to gigabytes).
MAX_PLAINTEXT_BYTES = 4 * 1024 * 1024

#: Level 9: 4G data is paid by the byte and a batch is small enough that the
#: extra CPU on the gateway is negligible.
DEFLATE_LEVEL = 9

#: Raw DEFLATE (RFC 1951) as the contract says: no zlib or gzip header.
_RAW_DEFLATE_WBITS = -15

#: Largest seq/ts: JSON numbers beyond 2^53 - 1 lose precision in many
#: receivers (RFC 8259 §6), and a ms timestamp or a counter never gets there.
MAX_JSON_INT = 2**53 - 1

#: ``dev``, ``kid`` and ``type`` go into the ``|``-separated ASCII AAD. A ``|``
#: inside one would let two different headers give the same AAD (moving the
#: separator between ``dev`` and ``kid``), so they are printable ASCII
#: without ``|`` or spaces, and short: they are identifiers, not text.
MAX_LABEL_LEN = 64
_LABEL = re.compile(rf"[\x21-\x7b\x7d\x7e]{{1,{MAX_LABEL_LEN}}}")

ErrorCode = Literal[
    "bad_json", "bad_field", "dev_mismatch", "unknown_kid", "bad_tag", "bad_zip", "bad_body"
]


class EnvelopeError(Exception):
    """An envelope the receiver must reject; ``code`` says why, for counting and replies."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted envelope."""

    v: int
    dev: str
    kid: str
    seq: int
    ts: int
    type: str
    zip: str
    body: dict[str, Any]


def aad(v: int, dev: str, kid: str, seq: int, ts: int, type: str, zip: str) -> bytes:
    """The additional authenticated data: ASCII ``v|dev|kid|seq|ts|type|zip``."""
    return f"{v}|{dev}|{kid}|{seq}|{ts}|{type}|{zip}".encode("ascii")


def seal(
    body: Mapping[str, Any] | bytes,
    *,
    dev: str,
    kid: str,
    key: bytes,
    seq: int,
    ts_ms: int,
    type: str,
    zip: str = "deflate",
) -> bytes:
    """Seal ``body`` into a UTF-8 JSON envelope ready to publish: a mapping as
    canonical JSON; bytes as a body already serialised as UTF-8 JSON (the
    uplink splices the store's canonical record texts into ``{"items":[…]}``
    without re-parsing)."""
    plaintext = body if isinstance(body, bytes) else canonical_json(body)
    for name, label in (("dev", dev), ("kid", kid), ("type", type)):
        if not _is_label(label):
            raise ValueError(
                f"envelope {name} {label!r} must be 1-{MAX_LABEL_LEN} printable ASCII, no '|'"
            )
    for name, number in (("seq", seq), ("ts_ms", ts_ms)):
        if not _is_json_int(number):
            raise ValueError(f"envelope {name} must be an integer in 0..2^53-1")
    if zip not in ZIP_MODES:
        raise ValueError(f"envelope zip must be one of {sorted(ZIP_MODES)}, got {zip!r}")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        # The receiver would refuse it; better to fail here, where it is a bug.
        raise ValueError(
            f"body is {len(plaintext)} bytes of JSON, over the {MAX_PLAINTEXT_BYTES} limit"
        )
    if zip == "deflate":
        deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, _RAW_DEFLATE_WBITS)
        plaintext = deflater.compress(plaintext) + deflater.flush()
    nonce = new_nonce()
    ct = _gcm_seal(key, nonce, plaintext, aad(ENVELOPE_VERSION, dev, kid, seq, ts_ms, type, zip))
    envelope = {
        "v": ENVELOPE_VERSION,
        "dev": dev,
        "kid": kid,
        "seq": seq,
        "ts": ts_ms,
        "type": type,
        "zip": zip,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ct": base64.b64encode(ct).decode("ascii"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode("ascii")


def open_envelope(
    payload: bytes, keys: Mapping[str, bytes], *, topic_dev: str | None = None
) -> Opened:
    """Verify and decrypt one envelope; raises :class:`EnvelopeError`.

    ``keys`` maps kid to SM4 key. ``topic_dev``, when given, is the device id
    from the MQTT topic, which ``dev`` must equal. A key of the wrong size in
    ``keys`` is the caller's bug, not the sender's, and raises ValueError.
    """
    env = _json_object(payload, "bad_json", "envelope")

    v = env.get("v")
    if not _is_json_int(v):
        raise EnvelopeError("bad_field", "v must be an integer")
    if v not in SUPPORTED_VERSIONS:
        raise EnvelopeError("bad_field", f"unsupported envelope version v={v}")
    dev, kid, type_, zip_ = (_label_field(env, name) for name in ("dev", "kid", "type", "zip"))
    seq, ts = _int_field(env, "seq"), _int_field(env, "ts")
    if zip_ not in ZIP_MODES:
        raise EnvelopeError("bad_field", f"zip must be one of {sorted(ZIP_MODES)}, got {zip_!r}")
    nonce = _b64_field(env, "nonce")
    if len(nonce) != NONCE_BYTES:
        raise EnvelopeError("bad_field", f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    ct = _b64_field(env, "ct")
    if len(ct) < TAG_BYTES:
        raise EnvelopeError("bad_field", f"ct is {len(ct)} bytes, shorter than the tag")
    if len(ct) > MAX_PLAINTEXT_BYTES + TAG_BYTES:
        raise EnvelopeError("bad_field", f"ct is {len(ct)} bytes, over the size limit")

    if topic_dev is not None and dev != topic_dev:
        raise EnvelopeError("dev_mismatch", f"dev {dev!r} differs from the topic's {topic_dev!r}")
    key = keys.get(kid)
    if key is None:
        raise EnvelopeError("unknown_kid", f"no key for kid {kid!r}")
    try:
        plaintext = _gcm_open(key, nonce, ct, aad(v, dev, kid, seq, ts, type_, zip_))
    except AuthenticationFailed:
        raise EnvelopeError("bad_tag", "SM4-GCM tag did not verify") from None

    if zip_ == "deflate":
        plaintext = _bounded_inflate(plaintext)
    body = _json_object(plaintext, "bad_body", "body")
    return Opened(v=v, dev=dev, kid=kid, seq=seq, ts=ts, type=type_, zip=zip_, body=body)


def _json_object(data: bytes, code: ErrorCode, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object; else :class:`EnvelopeError` ``code``."""
    try:
        parsed = _parse_json(data)
    except ValueError as exc:
        raise EnvelopeError(code, f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise EnvelopeError(code, f"{what} is not a JSON object")
    return parsed


def _bounded_inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(_RAW_DEFLATE_WBITS)
    try:
        # One byte over the limit is enough to know the limit is exceeded;
        # the rest of the stream is never inflated.
        out = inflater.decompress(data, MAX_PLAINTEXT_BYTES + 1)
    except zlib.error as exc:
        raise EnvelopeError("bad_zip", f"not a raw DEFLATE stream: {exc}") from None
    if len(out) > MAX_PLAINTEXT_BYTES:
        raise EnvelopeError("bad_zip", f"inflates to over {MAX_PLAINTEXT_BYTES} bytes")
    if not inflater.eof:
        raise EnvelopeError("bad_zip", "DEFLATE stream is truncated")
    if inflater.unused_data:
        raise EnvelopeError("bad_zip", "bytes after the end of the DEFLATE stream")
    return out


def _parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8 only, no duplicate keys, no NaN/Infinity; ValueError otherwise."""
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constant,
        )
    except RecursionError:
        # Absurd nesting must be a rejection, not a crash of the receiver.
        raise ValueError("nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys, other parsers the first:
    # refusing them removes any chance of two readers seeing different values.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _is_label(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _LABEL.fullmatch(value) is not None


def _is_json_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass; true/false are not numbers on the wire.
    return type(value) is int and 0 <= value <= MAX_JSON_INT


def _label_field(env: dict[str, Any], name: str) -> str:
    value = env.get(name)
    if not _is_label(value):
        raise EnvelopeError(
            "bad_field", f"{name} must be 1-{MAX_LABEL_LEN} printable ASCII without '|'"
        )
    return value


def _int_field(env: dict[str, Any], name: str) -> int:
    value = env.get(name)
    if not _is_json_int(value):
        raise EnvelopeError("bad_field", f"{name} must be an integer in 0..2^53-1")
    return value


def _b64_field(env: dict[str, Any], name: str) -> bytes:
    value = env.get(name)
    if not isinstance(value, str):
        raise EnvelopeError("bad_field", f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("bad_field", f"{name} is not valid base64") from None
