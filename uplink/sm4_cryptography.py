"""SM4 and SM4-GCM through ``cryptography``: the fallback of :mod:`uplink.sm4_openssl`.

Used where the system's libcrypto cannot serve (no OpenSSL 3, built with
no-sm4, or its RFC 8998 self-test failed): ``cryptography``'s wheel brings
its own OpenSSL with SM4-GCM, at ≈ 6.9 MB more RSS (docs/performance.md).
The tests run both back-ends against the same vectors and oracle.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class Sm4Cryptography:
    """SM4 block, SM4-GCM seal and open, the same calls as ``Sm4OpenSSL``."""

    def ecb_encrypt(self, key: bytes, block16: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
        return encryptor.update(block16) + encryptor.finalize()

    def seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def open(
        self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, tag: bytes
    ) -> bytes | None:
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        plaintext = decryptor.update(ciphertext)
        try:
            return plaintext + decryptor.finalize()
        except InvalidTag:
            return None
