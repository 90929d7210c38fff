"""The two SM4 back-ends (footprint crypto): the system
libcrypto through ctypes (uplink/sm4_openssl.py) and ``cryptography``
(uplink/sm4_cryptography.py) give the same bytes, the standard vectors, and
the same refusals; the daemon picks the first that loads, and says which.

Real parts: this machine's OpenSSL 3 libcrypto (Debian 12) and the
``cryptography`` wheel; tests/test_crypto.py checks the chosen one against
gmssl and the SP 800-38D oracle.
"""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_crypto import GCM_AAD, GCM_CIPHERTEXT, GCM_KEY, GCM_NONCE, GCM_PLAINTEXT, GCM_TAG
from uplink import crypto, sm4_openssl
from uplink.sm4_cryptography import Sm4Cryptography

# RFC 8998 A.1, as tests/test_crypto.py quotes it from platform-interface.md.
KEY, NONCE, AAD, PLAINTEXT = GCM_KEY, GCM_NONCE, GCM_AAD, GCM_PLAINTEXT
SEALED = GCM_CIPHERTEXT + GCM_TAG

OPENSSL = sm4_openssl.load()
CRYPTOGRAPHY = Sm4Cryptography()
BACKENDS = pytest.mark.parametrize("engine", [OPENSSL, CRYPTOGRAPHY], ids=["openssl", "crypto"])


@BACKENDS
def test_each_back_end_gives_the_standard_vectors(engine: crypto.Sm4Backend) -> None:
    assert engine.ecb_encrypt(KEY, KEY).hex() == "681edf34d206965e86b3e94f536e4246"
    assert engine.seal(KEY, NONCE, PLAINTEXT, AAD) == SEALED
    assert engine.open(KEY, NONCE, SEALED[:-16], AAD, SEALED[-16:]) == PLAINTEXT


@BACKENDS
def test_each_back_end_refuses_every_altered_part(engine: crypto.Sm4Backend) -> None:
    ct, tag = SEALED[:-16], SEALED[-16:]
    flip = lambda b, i: b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]  # noqa: E731
    assert engine.open(KEY, NONCE, flip(ct, 40), AAD, tag) is None
    assert engine.open(KEY, NONCE, ct, AAD, flip(tag, 15)) is None
    assert engine.open(KEY, flip(NONCE, 0), ct, AAD, tag) is None
    assert engine.open(KEY, NONCE, ct, flip(AAD, 19), tag) is None
    assert engine.open(flip(KEY, 3), NONCE, ct, AAD, tag) is None
    assert engine.open(KEY, NONCE, ct, AAD + b"x", tag) is None


# Sizes across OpenSSL's GHASH chunk (3 KiB: the stream callback's runs) and
# partial blocks (the block callback), an empty message and an empty AAD.
@settings(max_examples=300, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    nonce=st.binary(min_size=12, max_size=12),
    plaintext=st.one_of(st.binary(max_size=70), st.binary(min_size=3000, max_size=7000)),
    aad=st.binary(max_size=80),
)
def test_the_ctypes_back_end_agrees_with_cryptography(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes
) -> None:
    sealed = OPENSSL.seal(key, nonce, plaintext, aad)
    assert sealed == CRYPTOGRAPHY.seal(key, nonce, plaintext, aad)
    assert OPENSSL.open(key, nonce, sealed[:-16], aad, sealed[-16:]) == plaintext


def test_wrong_sizes_are_refused_before_openssl_reads_them() -> None:
    for call in (
        lambda: OPENSSL.seal(KEY[:15], NONCE, b"x", b""),
        lambda: OPENSSL.seal(KEY, NONCE[:11], b"x", b""),
        lambda: OPENSSL.open(KEY, NONCE, b"x", b"", b"\0" * 15),
        lambda: OPENSSL.ecb_encrypt(KEY, b"\0" * 17),
    ):
        with pytest.raises(ValueError, match="must be"):
            call()


def test_a_library_that_is_not_there_or_not_libcrypto_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    libc = ctypes.util.find_library("c")
    assert libc
    monkeypatch.setattr(sm4_openssl, "LIBCRYPTO_SONAMES", ("libnot-there.so.9", libc))
    with pytest.raises(sm4_openssl.Unavailable) as caught:
        sm4_openssl.load()
    assert "libnot-there.so.9" in str(caught.value)
    assert f"{libc}: libcrypto lacks" in str(caught.value)


def test_a_library_that_gives_other_bytes_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the system libcrypto's SM4 or GCM were wrong: the longer known
    # answer (3 100 bytes: two stream runs, a partial block) does not match.
    monkeypatch.setattr(sm4_openssl, "_LONG_SM3", "0" * 64)
    with pytest.raises(sm4_openssl.Unavailable, match="3 100-byte self-test"):
        sm4_openssl.load()


def test_the_daemon_uses_the_system_libcrypto_here_and_falls_back_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(crypto, "_backend", None)
    assert crypto.backend_name() == ("openssl", "")
    assert crypto.sm4_gcm_seal(KEY, NONCE, PLAINTEXT, AAD) == SEALED

    monkeypatch.setattr(crypto, "_backend", None)
    monkeypatch.setattr(sm4_openssl, "LIBCRYPTO_SONAMES", ("libnot-there.so.9",))
    name, why = crypto.backend_name()
    assert name == "cryptography" and "libnot-there.so.9" in why
    assert crypto.sm4_gcm_seal(KEY, NONCE, PLAINTEXT, AAD) == SEALED
    with pytest.raises(crypto.AuthenticationFailed):
        crypto.sm4_gcm_open(KEY, NONCE, SEALED[:-1] + b"\0", AAD)
    monkeypatch.setattr(crypto, "_backend", None)  # the next test chooses again


def test_a_callback_failure_is_an_error_never_a_wrong_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = sm4_openssl.load()

    # EVP_EncryptUpdate answers 0 inside the callbacks: ctypes would only
    # print an exception raised there; the seal must raise instead.
    real = engine._lib.EVP_EncryptUpdate
    calls = {"n": 0}

    def failing(*args: object) -> int:
        calls["n"] += 1
        return 0 if calls["n"] > 1 else int(real(*args))

    class Lib:
        def __getattr__(self, name: str) -> object:
            return failing if name == "EVP_EncryptUpdate" else getattr(real_lib, name)

    real_lib = engine._lib
    monkeypatch.setattr(engine, "_lib", Lib())
    with pytest.raises(sm4_openssl.CipherFailed):
        engine.seal(KEY, NONCE, PLAINTEXT, AAD)
    assert calls["n"] > 1


@pytest.mark.parametrize("length", [0, 5, 16, 3100])
def test_a_callback_that_never_ran_is_an_error_never_a_wrong_message(length: int) -> None:
    # What ctypes does when a callback cannot even start (its arguments
    # cannot be converted, an exception before its first line): prints, and
    # returns to OpenSSL as if it had worked. The counts catch it.
    engine = sm4_openssl.load()
    engine._block_cb = sm4_openssl._BLOCK128_F(lambda *_: None)  # H would stay zero
    with pytest.raises(sm4_openssl.CipherFailed, match="did not complete"):
        engine.seal(KEY, NONCE, bytes(length), AAD)
    engine = sm4_openssl.load()
    engine._stream_cb = sm4_openssl._CTR128_F(lambda *_: None)  # the blocks never encrypted
    if length >= 16:
        with pytest.raises(sm4_openssl.CipherFailed, match="did not complete"):
            engine.seal(KEY, NONCE, bytes(length), AAD)
    else:  # no whole block: the stream is never asked for
        assert engine.seal(KEY, NONCE, bytes(length), AAD) == CRYPTOGRAPHY.seal(
            KEY, NONCE, bytes(length), AAD
        )


#: In a child (the prctl cannot be undone): the kernel's memory-deny-write-
#: execute (PR_SET_MDWE, Linux 6.3+), what systemd/forecourt-collector.service
#: asks for with MemoryDenyWriteExecute=yes. ctypes callbacks need libffi
#: closures; with libffi 3.4's static trampolines they need no W+X page.
_UNDER_MDWE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE refused: errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a W+X page was still allowed: the guard is not on")
except PermissionError:
    pass
from uplink import sm4_openssl
engine = sm4_openssl.load()
print(engine.seal(bytes(range(16)), bytes(12), bytes(range(256)) * 20, b"aad").hex())
"""


def test_the_ctypes_back_end_works_under_memory_deny_write_execute() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = CRYPTOGRAPHY.seal(bytes(range(16)), bytes(12), bytes(range(256)) * 20, b"aad")
    assert bytes.fromhex(done.stdout.strip()) == expected
