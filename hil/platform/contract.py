"""The platform contract, implemented a second time from its text alone.

The reference receiver judges the collector, so it shares none of the
collector's code: a bug in uplink/ (the envelope, the cipher, the canonical
JSON, the chain) must not pass because the judge runs the same bug. Every
rule here is written from /work/shared/platform-interface.md ("Envelope",
"Tamper evidence") and the one clarification docs/uplink-protocol.md
proposes (``resent`` outside the chain hash):

- SM4 and SM3 are gmssl's pure-Python implementations (no OpenSSL, which the
  collector uses);
- GCM is NIST SP 800-38D written here over gmssl's SM4 block function
  (RFC 8998: SM4 in GCM, 96-bit nonce, 128-bit tag), checked against the
  contract's RFC 8998 A.1 vector (tests/test_receiver.py);
- canonical JSON is written here: keys sorted (by UTF-16 code units, as
  RFC 8785), ``,`` and ``:`` separators, no spaces, UTF-8, strings escaped as
  RFC 8785 does; a float is refused (the contract's numbers that are not
  integers travel as decimal strings);
- the key file is read with tomllib (``kid = "32 hex digits"``).

Slow (pure Python: ~0.1 ms per SM4 block, ~4 ms for the SM3 of an order) and
meant only for tests, the demo and the benches' receiver.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmssl.sm3 import sm3_hash
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4

#: ``prev`` of a nozzle's first order: 64 zeros (the contract).
GENESIS = "0" * 64
#: Outside the chain hash: ``h`` itself, and ``resent``, the transport flag that
#: changes on a resend (docs/uplink-protocol.md, "one interpretation").
NOT_HASHED = frozenset({"h", "resent"})
#: The envelope's fields (the contract's "Envelope").
ENVELOPE_FIELDS = ("v", "dev", "kid", "seq", "ts", "type", "zip", "nonce", "ct")
NONCE_BYTES, TAG_BYTES, KEY_BYTES = 12, 16, 16
#: A bound on what one message may inflate to (a deflate bomb is refused).
MAX_PLAINTEXT_BYTES = 16 * 1024 * 1024

_R = 0xE1 << 120  # SP 800-38D §6.3: the reduction constant of GF(2^128)
_MASK32 = 0xFFFFFFFF


class Rejected(Exception):
    """A message the platform refuses; ``code`` says why (the receiver prints it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotCanonical(ValueError):
    """A value canonical JSON cannot hold (a float, a lone surrogate, a non-string key)."""


# --- SM4-GCM (SP 800-38D over gmssl's SM4) ----------------------------------


class _Sm4Block:
    """E_K: one 16-byte block through gmssl's SM4 with key K."""

    def __init__(self, key: bytes) -> None:
        self._sm4 = CryptSM4()
        self._sm4.set_key(key, SM4_ENCRYPT)

    def __call__(self, block: bytes) -> bytes:
        return bytes(self._sm4.one_round(self._sm4.sk, list(block)))


def _gf_mult(x: int, y: int) -> int:
    """SP 800-38D Algorithm 1: X·Y in GF(2^128), bit 0 the most significant."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: int, data: bytes) -> int:
    """SP 800-38D Algorithm 2 over ``data`` (a multiple of 16 bytes)."""
    y = 0
    for i in range(0, len(data), 16):
        y = _gf_mult(y ^ int.from_bytes(data[i : i + 16], "big"), h)
    return y


def _gctr(block: _Sm4Block, counter: int, data: bytes) -> bytes:
    """SP 800-38D Algorithm 3: CTR from ``counter``, inc32 on the low 32 bits."""
    out = bytearray()
    for i in range(0, len(data), 16):
        stream = block(counter.to_bytes(16, "big"))
        out += bytes(a ^ b for a, b in zip(data[i : i + 16], stream, strict=False))
        counter = (counter & ~_MASK32) | ((counter + 1) & _MASK32)
    return bytes(out)


def _pad16(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def gcm_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """SP 800-38D GCM-AE: ciphertext || 128-bit tag (tests build vectors with it)."""
    block = _Sm4Block(key)
    j0 = int.from_bytes(nonce + b"\x00\x00\x00\x01", "big")
    ciphertext = _gctr(block, j0 + 1, plaintext)
    return ciphertext + _tag(block, j0, ciphertext, aad)


def gcm_open(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """SP 800-38D GCM-AD: the plaintext, or None when the tag does not verify."""
    if len(nonce) != NONCE_BYTES or len(sealed) < TAG_BYTES or len(key) != KEY_BYTES:
        return None
    block = _Sm4Block(key)
    j0 = int.from_bytes(nonce + b"\x00\x00\x00\x01", "big")
    ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    expected = _tag(block, j0, ciphertext, aad)
    if not _same(expected, tag):
        return None
    return _gctr(block, j0 + 1, ciphertext)


def _tag(block: _Sm4Block, j0: int, ciphertext: bytes, aad: bytes) -> bytes:
    h = int.from_bytes(block(bytes(16)), "big")
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    s = _ghash(h, _pad16(aad) + _pad16(ciphertext) + lengths)
    return _gctr(block, j0, s.to_bytes(16, "big"))


def _same(a: bytes, b: bytes) -> bool:
    diff = len(a) ^ len(b)
    for x, y in zip(a, b, strict=False):
        diff |= x ^ y
    return diff == 0


# --- canonical JSON and the chain -------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_SHORT_ESCAPES |= {"\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise NotCanonical("a lone surrogate is not Unicode text")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _canonical(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise NotCanonical(f"a float ({value!r}): numbers that are not integers are strings")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise NotCanonical("an object key that is not a string")
        keys = sorted(value, key=_utf16_key)
        return "{" + ",".join(f"{_string(k)}:{_canonical(value[k])}" for k in keys) + "}"
    raise NotCanonical(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """The contract's canonical JSON of ``value`` as UTF-8."""
    return _canonical(value).encode("utf-8")


def sm3_hex(data: bytes) -> str:
    return str(sm3_hash(list(data)))


def record_hash(record: Mapping[str, Any]) -> str:
    """``h``: SM3 of the canonical JSON of the record without ``h`` and ``resent``."""
    return sm3_hex(canonical_json({k: v for k, v in record.items() if k not in NOT_HASHED}))


# --- the envelope ------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    v: int
    dev: str
    kid: str
    seq: int
    ts: int
    type: str
    zip: str
    body: dict[str, Any]


def aad(v: int, dev: str, kid: str, seq: int, ts: int, type_: str, zip_: str) -> bytes:
    """The contract's AAD: ASCII ``v|dev|kid|seq|ts|type|zip``, integers in decimal."""
    return f"{v}|{dev}|{kid}|{seq}|{ts}|{type_}|{zip_}".encode("ascii")


def _int_field(envelope: Mapping[str, Any], name: str) -> int:
    value = envelope.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Rejected("bad_field", f"{name} must be a non-negative integer")
    return value


def _str_field(envelope: Mapping[str, Any], name: str) -> str:
    value = envelope.get(name)
    if not isinstance(value, str) or not value:
        raise Rejected("bad_field", f"{name} must be a non-empty string")
    return value


def _b64_field(envelope: Mapping[str, Any], name: str) -> bytes:
    value = envelope.get(name)
    if not isinstance(value, str):
        raise Rejected("bad_field", f"{name} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("bad_field", f"{name} is not valid base64") from None


def _inflate(data: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951), bounded, complete, nothing after its end."""
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(data, MAX_PLAINTEXT_BYTES + 1)
    except zlib.error as exc:
        raise Rejected("bad_zip", f"not a raw DEFLATE stream: {exc}") from None
    if len(out) > MAX_PLAINTEXT_BYTES or inflater.unconsumed_tail:
        raise Rejected("bad_zip", f"inflates to over {MAX_PLAINTEXT_BYTES} bytes")
    if not inflater.eof:
        raise Rejected("bad_zip", "the DEFLATE stream is truncated")
    if inflater.unused_data:
        raise Rejected("bad_zip", "bytes after the end of the DEFLATE stream")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("an object names a key twice")
    return found


def strict_json(data: bytes) -> Any:
    """JSON as RFC 8259 has it: no NaN / Infinity, no key named twice in an object."""
    return json.loads(
        data.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys
    )


def open_envelope(payload: bytes, keys: Mapping[str, bytes], topic_dev: str) -> Opened:
    """Check and open one message as the contract says, or raise :class:`Rejected`."""
    try:
        envelope = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Rejected("bad_json", "the envelope is not UTF-8 JSON") from None
    if not isinstance(envelope, dict):
        raise Rejected("bad_json", "the envelope is not a JSON object")
    v = _int_field(envelope, "v")
    if v != 1:
        raise Rejected("bad_field", f"unsupported envelope version {v}")
    dev, kid, type_ = (_str_field(envelope, k) for k in ("dev", "kid", "type"))
    seq, ts = _int_field(envelope, "seq"), _int_field(envelope, "ts")
    zip_ = envelope.get("zip")
    if zip_ not in ("none", "deflate"):
        raise Rejected("bad_field", f"zip must be none or deflate, got {zip_!r}")
    nonce, sealed = _b64_field(envelope, "nonce"), _b64_field(envelope, "ct")
    if len(nonce) != NONCE_BYTES:
        raise Rejected("bad_field", f"the nonce is {len(nonce)} bytes, not {NONCE_BYTES}")
    if len(sealed) < TAG_BYTES:
        raise Rejected("bad_field", "ct is shorter than its tag")
    if dev != topic_dev:
        raise Rejected("dev_mismatch", f"dev {dev!r} differs from the topic's {topic_dev!r}")
    key = keys.get(kid)
    if key is None:
        raise Rejected("unknown_kid", f"no key for kid {kid!r}")
    plaintext = gcm_open(key, nonce, sealed, aad(v, dev, kid, seq, ts, type_, zip_))
    if plaintext is None:
        raise Rejected("bad_tag", "the SM4-GCM tag does not verify")
    if zip_ == "deflate":
        plaintext = _inflate(plaintext)
    try:
        body = strict_json(plaintext)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("bad_body", f"the body is not strict UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Rejected("bad_body", "the body is not a JSON object")
    return Opened(v, dev, kid, seq, ts, type_, zip_, body)


def seal_envelope(
    body: Mapping[str, Any], *, dev: str, kid: str, key: bytes, seq: int, ts: int, type_: str
) -> bytes:
    """An envelope the platform sends (``zip`` none): the HTTP intake's ``ack``
    (docs/uplink-protocol.md "HTTP transport"), sealed as the contract seals
    every message, with this module's own canonical JSON and GCM."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = gcm_seal(key, nonce, canonical_json(body), aad(1, dev, kid, seq, ts, type_, "none"))
    envelope = {
        "v": 1, "dev": dev, "kid": kid, "seq": seq, "ts": ts, "type": type_, "zip": "none",
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ct": base64.b64encode(sealed).decode("ascii"),
    }  # fmt: skip
    return json.dumps(envelope, separators=(",", ":")).encode("ascii")


def load_keys(path: Path) -> dict[str, bytes]:
    """``kid = "<32 hex digits>"`` lines of a TOML key file."""
    with open(path, "rb") as f:
        table = tomllib.load(f)
    keys = {}
    for kid, value in table.items():
        key = bytes.fromhex(str(value))
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: key {kid!r} is not {KEY_BYTES} bytes")
        keys[kid] = key
    return keys
