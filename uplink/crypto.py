"""SM3 and SM4-GCM on OpenSSL (through ``cryptography``): the uplink's fast path.

platform-interface.md v1 seals every message with SM4-GCM as in RFC 8998:
128-bit key, 96-bit nonce, 128-bit tag appended to the ciphertext. The
pure-Python ``gmssl`` is about 400× slower (protocols.md §6), so production
code never imports it; the tests use it as an independent oracle.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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


def sm3(data: bytes) -> bytes:
    """SM3 digest (GB/T 32905-2016), 32 bytes."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def sm3_hex(data: bytes) -> str:
    """SM3 digest as 64 lowercase hex digits."""
    return sm3(data).hex()


def sm4_ecb_encrypt(key: bytes, block16: bytes) -> bytes:
    """Encrypt exactly one block with raw SM4.

    Only here so the tests can check the GB/T 32907 standard vector against
    the same OpenSSL primitive the GCM path uses; never use ECB for data.
    """
    _check_len("key", key, KEY_BYTES)
    _check_len("block", block16, BLOCK_BYTES)
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return encryptor.update(block16) + encryptor.finalize()


def sm4_gcm_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate; returns ciphertext || 16-byte tag."""
    _check_len("key", key, KEY_BYTES)
    _check_len("nonce", nonce, NONCE_BYTES)
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext + encryptor.tag


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
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    plaintext = decryptor.update(ciphertext)
    try:
        return plaintext + decryptor.finalize()
    except InvalidTag:
        raise AuthenticationFailed("SM4-GCM tag did not verify") from None


def new_nonce() -> bytes:
    """A fresh random 96-bit nonce from the OS CSPRNG.

    Why random and not a counter: a counter must survive restarts, upgrades
    and restores from backup without ever repeating, and a repeat under GCM
    leaks the XOR of two plaintexts and the GHASH key. Random nonces need no
    state. Their bound (NIST SP 800-38D §8.3): with random 96-bit nonces keep
    a key under 2^32 messages, which holds the chance of any collision below
    2^-32. At one message per second that is 136 years per key; the device
    sends far less (a batch per few seconds at most). Key rotation before any
    such bound matters is issue #7 (``key.rotate``).
    """
    return os.urandom(NONCE_BYTES)


def _check_len(name: str, value: bytes, expected: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"SM4 {name} must be bytes, got {type(value).__name__}")
    if len(value) != expected:
        raise ValueError(f"SM4 {name} must be {expected} bytes, got {len(value)}")
