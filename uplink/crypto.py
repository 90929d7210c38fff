"""SM3 and SM4-GCM on OpenSSL: the uplink's fast path.

Two back-ends, one contract: the system's libcrypto through ctypes
(:mod:`uplink.sm4_openssl`, proven on RFC 8998 when it loads) and, where that
cannot load, ``cryptography`` (:mod:`uplink.sm4_cryptography`, 6.9 MB more
RSS). :func:`backend_name` says which one runs; docs/decisions.md why.
SM3 lives in records/sm3.py (the record chain hashes with it too).

platform-interface.md v1 seals every message with SM4-GCM as in RFC 8998:
128-bit key, 96-bit nonce, 128-bit tag appended to the ciphertext. The
pure-Python ``gmssl`` is about 400× slower (protocols.md §6), so production
code never uses it for the data path; the tests use it as an independent oracle.

SM2 (GB/T 32918) has no OpenSSL binding in ``cryptography``, so the SM2
functions below use ``gmssl``, imported lazily: only commands (a few a day)
and ``key.rotate`` need them, never the poll loop. Encodings, fixed here and
in docs/uplink-protocol.md:

- private key: 64 hex digits (the scalar d); public key: 128 hex digits
  (x || y, no ``04`` prefix);
- signature: 128 hex digits r || s (each 32 bytes big-endian), over SM3 with
  the Z value of the default user id ``1234567812345678``; the contract's
  ``"sig":"<hex>"`` names hex, and r || s is what GB/T 32918 tools print;
- ciphertext: C1 || C3 || C2 (the GB/T 32918-2016 order), C1 the 64-byte
  point x || y without ``04``, C3 the 32-byte SM3, C2 as long as the message.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from records.sm3 import sm3

#: SM4 has a 128-bit key and a 128-bit block (GB/T 32907-2016).
KEY_BYTES = 16
BLOCK_BYTES = 16

#: The contract fixes a 96-bit nonce: GCM's fast path (no GHASH of the IV), and
#: the size RFC 8998 and NIST SP 800-38D recommend.
NONCE_BYTES = 12

#: Full 128-bit tag: the contract appends it to the ciphertext; a truncated
#: tag would weaken forgery resistance for no saving worth having.
TAG_BYTES = 16


class AuthenticationFailed(Exception):
    """The GCM tag did not verify: wrong key, or ciphertext, nonce or AAD altered."""


class Sm4Backend(Protocol):
    """What :mod:`uplink.sm4_openssl` and :mod:`uplink.sm4_cryptography` provide."""

    def ecb_encrypt(self, key: bytes, block16: bytes) -> bytes: ...

    def seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(
        self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, tag: bytes
    ) -> bytes | None: ...


_backend: Sm4Backend | None = None
_backend_name = ""
_backend_why = ""


def backend() -> Sm4Backend:
    """The SM4 back-end, chosen at first use: the system libcrypto if it
    passes its self-test, else ``cryptography``."""
    global _backend, _backend_name, _backend_why
    if _backend is None:
        from uplink import sm4_openssl

        try:
            _backend, _backend_name = sm4_openssl.load(), "openssl"
        except sm4_openssl.Unavailable as exc:
            from uplink.sm4_cryptography import Sm4Cryptography

            _backend, _backend_name, _backend_why = Sm4Cryptography(), "cryptography", str(exc)
    return _backend


def backend_name() -> tuple[str, str]:
    """("openssl" | "cryptography", why the first was not used, or "")."""
    backend()
    return _backend_name, _backend_why


def sm4_ecb_encrypt(key: bytes, block16: bytes) -> bytes:
    """Encrypt exactly one block with raw SM4.

    Only here so the tests can check the GB/T 32907 standard vector against
    the same OpenSSL primitive the GCM path uses; never use ECB for data.
    """
    _check_len("key", key, KEY_BYTES)
    _check_len("block", block16, BLOCK_BYTES)
    return backend().ecb_encrypt(key, block16)


def sm4_gcm_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate; returns ciphertext || 16-byte tag."""
    _check_len("key", key, KEY_BYTES)
    _check_len("nonce", nonce, NONCE_BYTES)
    return backend().seal(key, nonce, plaintext, aad)


def sm4_gcm_open(key: bytes, nonce: bytes, ct_and_tag: bytes, aad: bytes) -> bytes:
    """Verify and decrypt ciphertext || tag; raises :class:`AuthenticationFailed`.

    Nothing is returned unless the tag verifies, so a caller never sees
    plaintext from a forged or damaged message.
    """
    _check_len("key", key, KEY_BYTES)
    _check_len("nonce", nonce, NONCE_BYTES)
    if len(ct_and_tag) < TAG_BYTES:
        raise ValueError(
            f"ciphertext must hold at least the {TAG_BYTES}-byte tag, got {len(ct_and_tag)} bytes"
        )
    ciphertext, tag = ct_and_tag[:-TAG_BYTES], ct_and_tag[-TAG_BYTES:]
    plaintext = backend().open(key, nonce, ciphertext, aad, tag)
    if plaintext is None:
        raise AuthenticationFailed("SM4-GCM tag did not verify")
    return plaintext


def new_nonce() -> bytes:
    """A fresh random 96-bit nonce from the OS CSPRNG.

    Why random and not a counter: a counter must survive restarts, upgrades
    and restores from backup without ever repeating, and a repeat under GCM
    leaks the XOR of two plaintexts and the GHASH key. Random nonces need no
    state. Their bound (NIST SP 800-38D §8.3): with random 96-bit nonces keep
    a key under 2^32 messages, which holds the chance of any collision below
    2^-32. At one message per second that is 136 years per key; the device
    sends far less (a batch per few seconds at most). Key rotation before any
    such bound matters is the platform's ``key.rotate``.
    """
    return os.urandom(NONCE_BYTES)


# --- SM2 (gmssl, lazily imported) -------------------------------------------

#: Order n of the SM2 curve's base point (GB/T 32918.5): r and s lie in [1, n-1].
_SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
SM2_PRIVATE_HEX = 64
SM2_PUBLIC_HEX = 128
SM2_SIG_HEX = 128
#: C1 (64) + C3 (32): the overhead of an SM2 ciphertext over its message.
SM2_CT_OVERHEAD = 96
_HEX = frozenset("0123456789abcdefABCDEF")


class BadSM2Key(ValueError):
    """An SM2 key that is not the documented hex form."""


def _is_hex(text: str, length: int) -> bool:
    return isinstance(text, str) and len(text) == length and set(text) <= _HEX


def _sm2(private_hex: str, public_hex: str) -> Any:
    from gmssl import sm2  # lazy: pure Python, only commands need it

    crypt = sm2.CryptSM2(private_key=private_hex, public_key=public_hex, mode=1)
    # gmssl "removes" an 04 prefix with str.lstrip("04"), which also eats the
    # leading 0/4 digits of a key whose x coordinate starts with "04" (1 key in
    # 256): sign, verify and encrypt then fail. Our keys are always the bare
    # 128 hex digits, so set the attribute ourselves.
    crypt.public_key = public_hex
    return crypt


def sm2_public_from_private(private_hex: str) -> str:
    """The public key (128 hex) of a private key (64 hex)."""
    if not _is_hex(private_hex, SM2_PRIVATE_HEX) or not 0 < int(private_hex, 16) < _SM2_N - 1:
        raise BadSM2Key(f"SM2 private key must be {SM2_PRIVATE_HEX} hex digits in [1, n-2]")
    crypt = _sm2(private_hex, "")
    return str(crypt._kg(int(private_hex, 16), crypt.ecc_table["g"])).lower()


def sm2_generate() -> tuple[str, str]:
    """A fresh key pair (private hex, public hex) from the OS CSPRNG."""
    while True:
        d = int.from_bytes(os.urandom(32), "big")
        if 0 < d < _SM2_N - 1:
            private_hex = f"{d:064x}"
            return private_hex, sm2_public_from_private(private_hex)


def sm2_sign(private_hex: str, public_hex: str, message: bytes) -> str:
    """SM2 signature with SM3 and the default user id: 128 hex digits r || s."""
    k = f"{int.from_bytes(os.urandom(32), 'big') % (_SM2_N - 1) + 1:064x}"
    return str(_sm2(private_hex, public_hex).sign_with_sm3(message, k)).lower()


def sm2_verify(public_hex: str, signature_hex: str, message: bytes) -> bool:
    """True when ``signature_hex`` (r || s hex) is a valid signature of ``message``.

    Malformed input is False, never an exception: the caller is the command
    check, which must answer every forged message the same cheap way.
    """
    if not _is_hex(public_hex, SM2_PUBLIC_HEX) or not _is_hex(signature_hex, SM2_SIG_HEX):
        return False
    r, s = int(signature_hex[:64], 16), int(signature_hex[64:], 16)
    if not (0 < r < _SM2_N and 0 < s < _SM2_N):
        return False
    try:
        return bool(_sm2("", public_hex).verify_with_sm3(signature_hex.lower(), message))
    except (ValueError, ZeroDivisionError):
        return False


def sm2_encrypt(public_hex: str, message: bytes) -> bytes:
    """SM2 public-key encryption; C1 || C3 || C2 (see the module docstring)."""
    if not _is_hex(public_hex, SM2_PUBLIC_HEX):
        raise BadSM2Key(f"SM2 public key must be {SM2_PUBLIC_HEX} hex digits")
    if not message:
        raise ValueError("SM2 cannot encrypt an empty message")
    return bytes(_sm2("", public_hex).encrypt(message))


def sm2_decrypt(private_hex: str, ciphertext: bytes) -> bytes:
    """Decrypt C1 || C3 || C2; raises :class:`AuthenticationFailed` if C3 does not match.

    gmssl's own decrypt computes C3 but never compares it, so the check is
    done here: a ciphertext altered in transit must not yield a key.
    """
    if len(ciphertext) <= SM2_CT_OVERHEAD:
        raise AuthenticationFailed("SM2 ciphertext too short")
    from gmssl import sm3 as gm_sm3

    crypt = _sm2(private_hex, "")
    c1, c3, c2 = ciphertext[:64], ciphertext[64:96], ciphertext[96:]
    try:
        xy = crypt._kg(int(private_hex, 16), c1.hex())
    except (ValueError, ZeroDivisionError, TypeError):
        raise AuthenticationFailed("SM2 ciphertext C1 is not a curve point") from None
    t = gm_sm3.sm3_kdf(xy.encode("utf-8"), len(c2))
    if int(t, 16) == 0:
        raise AuthenticationFailed("SM2 KDF gave zero")
    message = bytes(a ^ b for a, b in zip(c2, bytes.fromhex(t), strict=True))
    x2, y2 = bytes.fromhex(xy[:64]), bytes.fromhex(xy[64:128])
    if sm3(x2 + message + y2) != c3:
        raise AuthenticationFailed("SM2 C3 did not verify: wrong key or ciphertext altered")
    return message


def _check_len(name: str, value: bytes, expected: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"SM4 {name} must be bytes, got {type(value).__name__}")
    size = memoryview(value).nbytes  # a memoryview's len() counts items, not bytes
    if size != expected:
        raise ValueError(f"SM4 {name} must be {expected} bytes, got {size}")
