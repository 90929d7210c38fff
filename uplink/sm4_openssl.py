"""SM4 and SM4-GCM on the system's OpenSSL 3 libcrypto, through ctypes.

Why not ``cryptography`` in the daemon: its Rust extension (14 MB, with its
own static OpenSSL) costs 6.9 MB of RSS in a daemon that already maps the
system libcrypto for hashlib and ssl; the budget is 40 MB (
docs/performance.md "Footprint"). ``cryptography`` stays the fallback
(:mod:`uplink.sm4_cryptography`) where this binding cannot load.

What OpenSSL 3.0 offers, and so how GCM is put together:

- SM4-ECB and SM4-CTR through EVP (the default provider);
- no SM4-GCM (it arrived in 3.2), but its generic GCM mode, ``CRYPTO_gcm128_*``
  (``<openssl/modes.h>``, exported), which takes the block cipher as a
  function: ``block128_f`` for single blocks (the hash key H = E(0), the tag
  mask E(J0), a trailing partial block) and ``ctr128_f`` for runs of whole
  blocks. Both are ctypes callbacks onto EVP SM4; GHASH, the counter
  arithmetic and the constant-time tag compare are OpenSSL's own code.

So no cipher arithmetic is written here. What this module must get right is
memory: every pointer is declared (``c_void_p``: a default ``int`` return
would cut a 64-bit pointer), sizes checked before OpenSSL reads a buffer,
every context freed in ``finally`` — and no callback failure may pass
unnoticed. An exception in a ctypes callback is only printed; the C caller
goes on, and the output (or, for H, the tag's strength) would be wrong
without a word. So each callback counts what it completed, as its last
statement, and the caller checks the count against what GCM must have
asked for (H, the tag mask, every byte of the message): any shortfall,
whatever its cause, is :class:`CipherFailed`, never a message.
:func:`load` proves the binding on RFC 8998 and on a longer known answer
(several GHASH chunks, a partial block, an odd AAD, an open and a refused
tag) before anything uses it.

Thread safety: the callbacks find their EVP contexts in a per-instance,
per-thread slot, and a lock serialises seals and opens as well. The daemon
seals on its event loop only.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

#: The sonames tried, newest first: OpenSSL 3 (Debian 12, Yocto kirkstone+).
#: OpenSSL 1.1 has SM4 too but not this GCM API's symbols under the same
#: contract, so it is not tried: ``cryptography`` is the fallback there.
LIBCRYPTO_SONAMES = ("libcrypto.so.3",)

#: EVP_EncryptUpdate takes an ``int`` length; the envelope's messages are
#: kilobytes (a batch is capped far below this), so a bigger one is a bug.
MAX_MESSAGE_BYTES = 1 << 30

_BLOCK = 16
_ZERO_IV = bytes(_BLOCK)

_BLOCK128_F = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_CTR128_F = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p
)


class Unavailable(Exception):
    """This system's libcrypto cannot do SM4-GCM this way (missing, too old, or wrong)."""


class CipherFailed(OSError):
    """An OpenSSL call inside a seal or an open failed (out of memory, a bad state).

    An OSError: the uplink treats it as it treats a lost link (back off, try
    again from the store), so a transient failure never takes the ports down.
    """


class _Slot(threading.local):
    """The EVP contexts the callbacks work with during one call, and what they did."""

    ecb: int | None = None
    ctr: int | None = None
    failed: bool = False
    blocks_done: int = 0  # single blocks encrypted by _block
    stream_bytes: int = 0  # bytes encrypted by _stream


class Sm4OpenSSL:
    """SM4 block, SM4-GCM seal and open on one loaded libcrypto."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._declare(lib)
        self._ecb_cipher = lib.EVP_sm4_ecb()
        self._ctr_cipher = lib.EVP_sm4_ctr()
        if not self._ecb_cipher or not self._ctr_cipher:
            raise Unavailable("libcrypto has no SM4 (built with no-sm4)")
        self._lock = threading.Lock()
        self._slot = _Slot()
        # Kept on the instance: ctypes frees a callback's trampoline when the
        # Python object goes, and OpenSSL would then call freed memory.
        self._block_cb = _BLOCK128_F(self._block)
        self._stream_cb = _CTR128_F(self._stream)

    @staticmethod
    def _declare(lib: ctypes.CDLL) -> None:
        vp, sz, cp, ci = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_int
        signatures: dict[str, tuple[Any, list[Any]]] = {
            "ERR_clear_error": (None, []),
            "EVP_sm4_ecb": (vp, []),
            "EVP_sm4_ctr": (vp, []),
            "EVP_CIPHER_CTX_new": (vp, []),
            "EVP_CIPHER_CTX_free": (None, [vp]),
            "EVP_CIPHER_CTX_set_padding": (ci, [vp, ci]),
            "EVP_EncryptInit_ex": (ci, [vp, vp, vp, cp, cp]),
            "EVP_EncryptUpdate": (ci, [vp, vp, ctypes.POINTER(ci), vp, ci]),
            "CRYPTO_gcm128_new": (vp, [vp, _BLOCK128_F]),
            "CRYPTO_gcm128_release": (None, [vp]),
            "CRYPTO_gcm128_setiv": (None, [vp, cp, sz]),
            "CRYPTO_gcm128_aad": (ci, [vp, cp, sz]),
            "CRYPTO_gcm128_encrypt_ctr32": (ci, [vp, cp, vp, sz, _CTR128_F]),
            "CRYPTO_gcm128_decrypt_ctr32": (ci, [vp, cp, vp, sz, _CTR128_F]),
            "CRYPTO_gcm128_finish": (ci, [vp, cp, sz]),
            "CRYPTO_gcm128_tag": (None, [vp, vp, sz]),
        }
        for name, (restype, argtypes) in signatures.items():
            try:
                function = getattr(lib, name)
            except AttributeError:
                raise Unavailable(f"libcrypto lacks {name}") from None
            function.restype = restype
            function.argtypes = argtypes

    # --- the callbacks OpenSSL's GCM calls ----------------------------------
    # Each counts its work as its last statement; gcm() checks the counts.

    def _block(self, block_in: int, block_out: int, _key: int) -> None:
        try:
            slot = self._slot
            outl = ctypes.c_int(0)
            ok = self._lib.EVP_EncryptUpdate(slot.ecb, block_out, outl, block_in, _BLOCK)
            if ok == 1 and outl.value == _BLOCK:
                slot.blocks_done += 1
        except BaseException:  # noted by the count; ctypes would only print it
            self._slot.failed = True

    def _stream(self, data_in: int, data_out: int, blocks: int, _key: int, ivec: int) -> None:
        # ctr128_f steps only the low 32 bits of the counter; EVP's CTR steps
        # all 128. They agree unless the low word wraps inside one call, and
        # GCM with a 96-bit nonce starts it at 2: a wrap needs a 64 GiB
        # message (MAX_MESSAGE_BYTES forbids far less).
        try:
            slot, lib = self._slot, self._lib
            counter = ctypes.string_at(ivec, _BLOCK)
            outl = ctypes.c_int(0)
            size = blocks * _BLOCK
            ok = lib.EVP_EncryptInit_ex(slot.ctr, None, None, None, counter) == 1
            ok = ok and lib.EVP_EncryptUpdate(slot.ctr, data_out, outl, data_in, size) == 1
            if ok and outl.value == size:
                slot.stream_bytes += size
        except BaseException:  # noted by the count; ctypes would only print it
            self._slot.failed = True

    # --- the public calls ------------------------------------------------------

    def _context(self, cipher: int, key: bytes, iv: bytes | None) -> int:
        lib = self._lib
        ctx = lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise self._failed("EVP_CIPHER_CTX_new")
        if lib.EVP_EncryptInit_ex(ctx, cipher, None, key, iv) != 1:
            lib.EVP_CIPHER_CTX_free(ctx)
            raise self._failed("EVP_EncryptInit_ex(SM4)")
        lib.EVP_CIPHER_CTX_set_padding(ctx, 0)
        return int(ctx)

    def _failed(self, what: str) -> CipherFailed:
        # OpenSSL's per-thread error queue is shared with hashlib and ssl:
        # leave nothing of ours in it.
        self._lib.ERR_clear_error()
        return CipherFailed(what)

    def ecb_encrypt(self, key: bytes, block16: bytes) -> bytes:
        key, block16 = bytes(key), bytes(block16)
        _sizes(key=key, block=block16)
        out = ctypes.create_string_buffer(_BLOCK)
        with self._lock:
            ctx = self._context(self._ecb_cipher, key, None)
            try:
                outl = ctypes.c_int(0)
                ok = self._lib.EVP_EncryptUpdate(ctx, out, outl, block16, _BLOCK)
                if ok != 1 or outl.value != _BLOCK:
                    raise self._failed("EVP_EncryptUpdate(SM4-ECB)")
            finally:
                self._lib.EVP_CIPHER_CTX_free(ctx)
        return out.raw

    def seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext || 16-byte tag."""
        sealed = self._gcm(key, nonce, plaintext, aad, None)
        if sealed is None:  # a seal always has its tag: this is a bug
            raise CipherFailed("SM4-GCM seal returned nothing")
        return sealed

    def open(
        self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, tag: bytes
    ) -> bytes | None:
        """The plaintext, or None when the tag does not verify (nothing else leaks)."""
        return self._gcm(key, nonce, ciphertext, aad, tag)

    def _gcm(
        self, key: bytes, nonce: bytes, data: bytes, aad: bytes, tag: bytes | None
    ) -> bytes | None:
        # Bytes first (a memoryview's len() counts items), then the sizes:
        # OpenSSL reads as many bytes as SM4 and GCM expect, whatever was
        # passed, so a short key here would be a read past its buffer.
        key, nonce, data, aad = bytes(key), bytes(nonce), bytes(data), bytes(aad)
        tag = None if tag is None else bytes(tag)
        _sizes(key=key, nonce=nonce, tag=tag)
        if len(data) > MAX_MESSAGE_BYTES or len(aad) > MAX_MESSAGE_BYTES:
            raise ValueError(f"SM4-GCM message over {MAX_MESSAGE_BYTES} bytes")
        lib, slot = self._lib, self._slot
        out = ctypes.create_string_buffer(len(data) or 1)
        with self._lock:
            slot.failed, slot.blocks_done, slot.stream_bytes = False, 0, 0
            slot.ecb = self._context(self._ecb_cipher, key, None)
            gcm = None
            try:
                slot.ctr = self._context(self._ctr_cipher, key, _ZERO_IV)
                gcm = lib.CRYPTO_gcm128_new(None, self._block_cb)  # calls _block for H
                if not gcm:
                    raise self._failed("CRYPTO_gcm128_new")
                lib.CRYPTO_gcm128_setiv(gcm, nonce, len(nonce))  # _block for E(J0)
                if lib.CRYPTO_gcm128_aad(gcm, aad, len(aad)) != 0:
                    raise self._failed("CRYPTO_gcm128_aad")
                step = (
                    lib.CRYPTO_gcm128_encrypt_ctr32
                    if tag is None
                    else lib.CRYPTO_gcm128_decrypt_ctr32
                )
                if step(gcm, data, out, len(data), self._stream_cb) != 0:
                    raise self._failed("CRYPTO_gcm128_(en|de)crypt_ctr32")
                if tag is None:
                    mac = ctypes.create_string_buffer(_BLOCK)
                    lib.CRYPTO_gcm128_tag(gcm, mac, _BLOCK)
                    verified = True
                else:
                    verified = lib.CRYPTO_gcm128_finish(gcm, tag, len(tag)) == 0
                if slot.failed or not _all_done(slot, len(data)):
                    raise self._failed("an SM4 call inside GCM did not complete")
            finally:
                if gcm:
                    lib.CRYPTO_gcm128_release(gcm)
                for ctx in (slot.ecb, slot.ctr):
                    if ctx:
                        lib.EVP_CIPHER_CTX_free(ctx)
                slot.ecb = slot.ctr = None
        if tag is None:
            return out.raw[: len(data)] + mac.raw
        return out.raw[: len(data)] if verified else None


def _all_done(slot: _Slot, length: int) -> bool:
    """Did the callbacks complete everything GCM needed for ``length`` bytes?

    Two single blocks always (H at init, E(J0) at setiv); then every block of
    the message, whole runs through ``_stream`` and the rest (a partial last
    block, or every block in a build with OPENSSL_SMALL_FOOTPRINT) one by one
    through ``_block``: together exactly the message rounded up to blocks.
    """
    padded = -(-length // _BLOCK) * _BLOCK
    singles = slot.blocks_done - 2
    return singles >= 0 and slot.stream_bytes + singles * _BLOCK == padded


#: The sizes OpenSSL will read: SM4's key and block, the contract's nonce and tag.
_SIZES = {"key": 16, "block": 16, "nonce": 12, "tag": 16}


def _sizes(**values: bytes | None) -> None:
    for name, value in values.items():
        if value is not None and len(value) != _SIZES[name]:
            raise ValueError(f"SM4 {name} must be {_SIZES[name]} bytes, got {len(value)}")


# RFC 8998 A.1: checked at load, so a libcrypto that does something else
# (a patched build, a wrong symbol) is never used for a single message.
_RFC8998_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
_RFC8998_NONCE = bytes.fromhex("00001234567800000000ABCD")
_RFC8998_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
_RFC8998_PT = bytes.fromhex(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
_RFC8998_CT_TAG = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    "83DE3541E4C2B58177E065A9BF7B62EC"
)


#: A longer known answer, from ``cryptography`` (OpenSSL 3.x's own SM4-GCM):
#: 3 100 bytes (the stream callback called again with a new counter after
#: OpenSSL's 3 KiB GHASH chunk, then a 12-byte partial block), a 21-byte AAD.
#: The SM3 of ciphertext || tag, to keep the constant short.
_LONG_KEY = bytes(range(16))
_LONG_NONCE = bytes(range(100, 112))
_LONG_PT = bytes(i * 7 % 251 for i in range(3100))
_LONG_AAD = b"forecourt-self-test:1"
_LONG_SM3 = "c437b2fc50eb19fccf1007753a2c5d665608c8ae0372f246204ebc571277e0fa"


def _self_test(backend: Sm4OpenSSL) -> str | None:
    """What is wrong with ``backend``, or None when it gives the known answers."""
    import hashlib

    sealed = backend.seal(_RFC8998_KEY, _RFC8998_NONCE, _RFC8998_PT, _RFC8998_AAD)
    if sealed != _RFC8998_CT_TAG:
        return "RFC 8998 self-test gave the wrong ciphertext"
    long = backend.seal(_LONG_KEY, _LONG_NONCE, _LONG_PT, _LONG_AAD)
    if hashlib.new("sm3", long).hexdigest() != _LONG_SM3:
        return "the 3 100-byte self-test gave the wrong ciphertext"
    body, tag = long[:-_BLOCK], long[-_BLOCK:]
    if backend.open(_LONG_KEY, _LONG_NONCE, body, _LONG_AAD, tag) != _LONG_PT:
        return "the self-test's message did not open"
    if backend.open(_LONG_KEY, _LONG_NONCE, body, _LONG_AAD, bytes(_BLOCK)) is not None:
        return "a wrong tag was accepted"
    return None


def load() -> Sm4OpenSSL:
    """The binding on this system's libcrypto, proven by its self-test, or :class:`Unavailable`."""
    errors = []
    for soname in LIBCRYPTO_SONAMES:
        try:
            backend = Sm4OpenSSL(ctypes.CDLL(soname))
        except (OSError, Unavailable) as exc:
            errors.append(f"{soname}: {exc}")
            continue
        try:
            wrong = _self_test(backend)
        except (CipherFailed, ValueError) as exc:
            wrong = f"the self-test raised {exc}"
        if wrong is None:
            return backend
        errors.append(f"{soname}: {wrong}")
    raise Unavailable("; ".join(errors) or "no libcrypto soname to try")
