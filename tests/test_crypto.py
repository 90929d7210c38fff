"""SM3 / SM4 / SM4-GCM against the standards' vectors and an independent oracle.

The oracle is GCM written here from NIST SP 800-38D (GCTR + GHASH) on top of
gmssl's pure-Python SM4: no code shared with OpenSSL, so agreement on random
inputs means our use of ``cryptography`` is right, not merely self-consistent.
Key-file handling (uplink.keys) is tested at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gmssl.sm3 import sm3_hash
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4
from hypothesis import given, settings
from hypothesis import strategies as st

from records.sm3 import sm3, sm3_hex
from uplink.crypto import (
    AuthenticationFailed,
    new_nonce,
    sm4_ecb_encrypt,
    sm4_gcm_open,
    sm4_gcm_seal,
)
from uplink.keys import KeyFileError, load_keys, redact

# --- standard vectors --------------------------------------------------------

SM4_VECTOR = bytes.fromhex("0123456789abcdeffedcba9876543210")

# RFC 8998 A.1, as quoted in platform-interface.md.
GCM_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
GCM_NONCE = bytes.fromhex("00001234567800000000ABCD")
GCM_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
GCM_PLAINTEXT = b"".join(bytes([b]) * 8 for b in (0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0xEE, 0xAA))
GCM_CIPHERTEXT = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
)
GCM_TAG = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")


def test_sm4_gbt_32907_vector() -> None:
    assert sm4_ecb_encrypt(SM4_VECTOR, SM4_VECTOR).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm3_gbt_32905_vectors() -> None:
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert (
        sm3_hex(b"abcd" * 16) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    assert sm3(b"abc") == bytes.fromhex(sm3_hex(b"abc"))


def test_sm4_gcm_rfc_8998_vector() -> None:
    sealed = sm4_gcm_seal(GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_AAD)
    assert len(GCM_PLAINTEXT) == 64
    assert sealed[:16] == bytes.fromhex("17F399F08C67D5EE19D0DC9969C4BB7D")
    assert sealed[:-16] == GCM_CIPHERTEXT
    assert sealed[-16:] == GCM_TAG
    assert sm4_gcm_open(GCM_KEY, GCM_NONCE, sealed, GCM_AAD) == GCM_PLAINTEXT


def test_the_oracle_itself_reproduces_rfc_8998() -> None:
    assert _oracle_gcm_seal(GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_AAD) == GCM_CIPHERTEXT + GCM_TAG


# --- independent oracle: NIST SP 800-38D GCM over gmssl SM4 ----------------

_R = 0xE1 << 120  # the GCM reduction polynomial, SP 800-38D §6.3


def _gf_mult(x: int, y: int) -> int:
    """SP 800-38D Algorithm 1: multiplication in GF(2^128), bit 0 = MSB."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: int, data: bytes) -> int:
    y = 0
    for i in range(0, len(data), 16):
        y = _gf_mult(y ^ int.from_bytes(data[i : i + 16], "big"), h)
    return y


def _pad16(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 16)


def _oracle_gcm_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    sm4 = CryptSM4()
    sm4.set_key(key, SM4_ENCRYPT)

    def encrypt_block(block: bytes) -> bytes:
        # crypt_ecb appends a whole PKCS#7 block; the first 16 bytes are E(K, block).
        return bytes(sm4.crypt_ecb(block)[:16])

    h = int.from_bytes(encrypt_block(b"\x00" * 16), "big")
    j0 = nonce + b"\x00\x00\x00\x01"  # 96-bit IV: J0 = IV || 0^31 || 1
    counter = int.from_bytes(j0[12:], "big")
    out = bytearray()
    for i in range(0, len(plaintext), 16):
        counter = (counter + 1) & 0xFFFFFFFF  # inc32
        stream = encrypt_block(nonce + counter.to_bytes(4, "big"))
        chunk = plaintext[i : i + 16]
        out += bytes(a ^ b for a, b in zip(chunk, stream, strict=False))
    ciphertext = bytes(out)
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    s = _ghash(h, _pad16(aad) + _pad16(ciphertext) + lengths)
    tag = int.from_bytes(encrypt_block(j0), "big") ^ s
    return ciphertext + tag.to_bytes(16, "big")


@settings(max_examples=60, deadline=None)  # gmssl is pure Python and slow
@given(
    key=st.binary(min_size=16, max_size=16),
    nonce=st.binary(min_size=12, max_size=12),
    plaintext=st.binary(min_size=0, max_size=200),
    aad=st.binary(min_size=0, max_size=64),
)
def test_sm4_gcm_agrees_with_the_oracle(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes
) -> None:
    sealed = sm4_gcm_seal(key, nonce, plaintext, aad)
    assert sealed == _oracle_gcm_seal(key, nonce, plaintext, aad)
    assert sm4_gcm_open(key, nonce, sealed, aad) == plaintext


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=300))
def test_sm3_agrees_with_gmssl(data: bytes) -> None:
    assert sm3_hex(data) == sm3_hash(list(data))


@settings(max_examples=60, deadline=None)
@given(block=st.binary(min_size=16, max_size=16), key=st.binary(min_size=16, max_size=16))
def test_sm4_block_agrees_with_gmssl(key: bytes, block: bytes) -> None:
    sm4 = CryptSM4()
    sm4.set_key(key, SM4_ENCRYPT)
    assert sm4_ecb_encrypt(key, block) == bytes(sm4.crypt_ecb(block)[:16])


# --- authentication ----------------------------------------------------------


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("bit", [0, 7, 100, 511])
def test_a_flipped_ciphertext_bit_fails(bit: int) -> None:
    sealed = sm4_gcm_seal(GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_AAD)
    with pytest.raises(AuthenticationFailed):
        sm4_gcm_open(GCM_KEY, GCM_NONCE, _flip(sealed, bit), GCM_AAD)


@pytest.mark.parametrize("bit", [0, 64, 127])
def test_a_flipped_tag_bit_fails(bit: int) -> None:
    sealed = sm4_gcm_seal(GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_AAD)
    with pytest.raises(AuthenticationFailed):
        sm4_gcm_open(GCM_KEY, GCM_NONCE, _flip(sealed, 512 + bit), GCM_AAD)


@pytest.mark.parametrize("bit", [0, 50, 95])
def test_a_flipped_nonce_bit_fails(bit: int) -> None:
    sealed = sm4_gcm_seal(GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_AAD)
    with pytest.raises(AuthenticationFailed):
        sm4_gcm_open(GCM_KEY, _flip(GCM_NONCE, bit), sealed, GCM_AAD)


@pytest.mark.parametrize("bit", [0, 80, 159])
def test_a_flipped_aad_bit_fails(bit: int) -> None:
    sealed = sm4_gcm_seal(GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_AAD)
    with pytest.raises(AuthenticationFailed):
        sm4_gcm_open(GCM_KEY, GCM_NONCE, sealed, _flip(GCM_AAD, bit))


def test_the_wrong_key_fails_and_empty_messages_authenticate() -> None:
    sealed = sm4_gcm_seal(GCM_KEY, GCM_NONCE, b"", b"")
    assert len(sealed) == 16
    assert sm4_gcm_open(GCM_KEY, GCM_NONCE, sealed, b"") == b""
    with pytest.raises(AuthenticationFailed):
        sm4_gcm_open(_flip(GCM_KEY, 3), GCM_NONCE, sealed, b"")


@pytest.mark.parametrize(
    ("key", "nonce", "message"),
    [
        (b"k" * 15, GCM_NONCE, "SM4 key must be 16 bytes, got 15"),
        (b"k" * 32, GCM_NONCE, "SM4 key must be 16 bytes, got 32"),
        (GCM_KEY, b"n" * 16, "SM4 nonce must be 12 bytes, got 16"),
        (GCM_KEY, b"", "SM4 nonce must be 12 bytes, got 0"),
    ],
)
def test_sizes_are_validated(key: bytes, nonce: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        sm4_gcm_seal(key, nonce, b"x", b"")
    with pytest.raises(ValueError, match=f"^{message}$"):
        sm4_gcm_open(key, nonce, b"x" * 32, b"")


def test_open_refuses_input_shorter_than_a_tag() -> None:
    with pytest.raises(ValueError, match="at least the 16-byte tag, got 15 bytes"):
        sm4_gcm_open(GCM_KEY, GCM_NONCE, b"x" * 15, b"")
    with pytest.raises(ValueError, match="SM4 block must be 16 bytes, got 8"):
        sm4_ecb_encrypt(GCM_KEY, b"x" * 8)


def test_nonces_are_12_fresh_bytes() -> None:
    nonces = {new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    assert {len(n) for n in nonces} == {12}


# --- key files ---------------------------------------------------------------

SECRET = "c0ffee00112233445566778899aabbcc"
HEX_32_GIVEN_32 = "key 'k1' must be 32 hex digits (32 characters given)"


def _key_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "keys.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(KeyFileError) as info:
        load_keys(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for form in (SECRET, SECRET.upper(), SECRET[:8], SECRET[-8:]):
        assert form not in message
    return message


def test_a_good_key_file(tmp_path: Path) -> None:
    path = _key_file(
        tmp_path,
        f'# demo\ndemo-k1 = "{SECRET}"\n"k2.b" = "{SECRET.upper()}"\n',
    )
    assert load_keys(path) == {"demo-k1": bytes.fromhex(SECRET), "k2.b": bytes.fromhex(SECRET)}


def test_the_shipped_demo_key_file_loads() -> None:
    keys = load_keys(Path(__file__).parent.parent / "config" / "demo-keys.toml")
    assert list(keys) == ["demo-k1"]
    assert len(keys["demo-k1"]) == 16


def test_a_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert _load_error(path) == f"{path}: key file not found"


def test_an_unreadable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.mkdir()
    assert _load_error(path) == f"{path}: cannot read key file: Is a directory"


def test_a_key_file_that_is_not_toml(tmp_path: Path) -> None:
    path = _key_file(tmp_path, f'demo-k1 = "{SECRET}\n')
    assert _load_error(path).startswith(f"{path}: not valid TOML: ")


def test_a_key_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = _key_file(tmp_path, f'demo-k1 = "{SECRET}"\n# \xff\n'.encode("latin-1"))
    assert _load_error(path) == f"{path}: not UTF-8 text"


def test_an_empty_key_file(tmp_path: Path) -> None:
    path = _key_file(tmp_path, "# nothing here\n\n")
    assert _load_error(path) == (
        f'{path}: no keys in file (expected lines like kid = "<32 hex digits>")'
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f'k1 = "{SECRET[:30]}"', "key 'k1' must be 32 hex digits (30 characters given)"),
        (f'k1 = "{SECRET}00"', "key 'k1' must be 32 hex digits (34 characters given)"),
        (f'k1 = "{SECRET[:31]}g"', HEX_32_GIVEN_32),
        (
            f'k1 = "{SECRET[:16]} {SECRET[16:31]}"',
            "key 'k1' must be 32 hex digits (32 characters given)",
        ),
        (f"k1 = 0x{SECRET}", "key 'k1' must be a string of 32 hex digits, got an integer"),
        (f'[k1]\nkey = "{SECRET}"', "key 'k1' must be a string of 32 hex digits, got a table"),
        (f'"a|b" = "{SECRET}"', "kid 'a|b' is not 1-64 of A-Z a-z 0-9 . _ -"),
    ],
)
def test_a_bad_key_names_the_kid_not_the_value(tmp_path: Path, line: str, problem: str) -> None:
    path = _key_file(tmp_path, line + "\n")
    assert _load_error(path) == f"{path}: {problem}"


def test_redact_is_a_short_fingerprint() -> None:
    key = bytes.fromhex(SECRET)
    assert redact(key) == "sm3:" + sm3_hex(key)[:8]
    assert SECRET not in redact(key)
    assert redact(key) != redact(bytes(16))
