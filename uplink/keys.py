"""SM4 key files: TOML, one ``kid = "32 hex digits"`` per line.

Key material never appears in an error message or a log line: errors name
the file and the kid, and :func:`redact` gives a fingerprint to log instead.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from config import toml_read
from records.sm3 import sm3_hex
from uplink.crypto import KEY_BYTES

#: A kid travels in every envelope and in its AAD: keep it a short plain
#: identifier (a subset of what the envelope accepts).
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: bytes.fromhex would also accept spaces; a key is exactly 32 hex digits.
_KEY_HEX = re.compile(rf"[0-9a-fA-F]{{{2 * KEY_BYTES}}}")

#: Hex digits of SM3(key) shown by :func:`redact`: enough to tell keys apart
#: in logs, and a digest reveals nothing usable about a random 128-bit key.
FINGERPRINT_HEX_DIGITS = 8

_TOML_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    list: "an array",
    dict: "a table",
}


class KeyFileError(Exception):
    """A key file that cannot be used; the message is one line naming file and problem."""


def _read(path: Path) -> bytes:
    """The file's bytes: a regular file within config/toml_read.py's size bound
    (a key path at /dev/zero or a FIFO must not hang or fill the memory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise KeyFileError(f"{path}: cannot read key file: Is a directory")
        raise KeyFileError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(toml_read.MAX_TOML_BYTES + 1)
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read key file: {exc.strerror or exc}") from None
    if len(raw) > toml_read.MAX_TOML_BYTES:
        raise KeyFileError(f"{path}: larger than {toml_read.MAX_TOML_BYTES // 1024} KiB")
    return raw


def load_keys(path: Path) -> dict[str, bytes]:
    """Read a key file into {kid: 16-byte key}; raises :class:`KeyFileError`."""
    raw = _read(path)
    try:
        # The decode error message would quote a byte of the file: leave it out.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not UTF-8 text") from None
    try:
        table = toml_read.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib reports position, not content, so no key leaks through here.
        raise KeyFileError(f"{path}: not valid TOML: {exc}") from None
    if not table:
        raise KeyFileError(f'{path}: no keys in file (expected lines like kid = "<32 hex digits>")')
    keys: dict[str, bytes] = {}
    for kid, value in table.items():
        if not _KID.fullmatch(kid):
            raise KeyFileError(f"{path}: kid {kid!r} is not 1-64 of A-Z a-z 0-9 . _ -")
        if not isinstance(value, str):
            kind = _TOML_TYPE_NAMES.get(type(value), "not a string")
            raise KeyFileError(
                f"{path}: key {kid!r} must be a string of {2 * KEY_BYTES} hex digits, got {kind}"
            )
        if not _KEY_HEX.fullmatch(value):
            raise KeyFileError(
                f"{path}: key {kid!r} must be {2 * KEY_BYTES} hex digits "
                f"({len(value)} characters given)"
            )
        keys[kid] = bytes.fromhex(value)
    return keys


def redact(key: bytes) -> str:
    """A loggable fingerprint of a key, e.g. ``sm3:1a2b3c4d``; never log the key."""
    return f"sm3:{sm3_hex(key)[:FINGERPRINT_HEX_DIGITS]}"


#: Permission bits that let anyone but the owner read or write a secret file.
_NOT_OWNER_BITS = 0o077


def check_owner_only(path: Path) -> None:
    """Refuse a secret file that group or others may read or write.

    The message says which bits are set and how to fix it, so the operator's
    one StartError line is enough (D9: keys stay on the box and in no one
    else's hands).
    """
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot stat key file: {exc.strerror or exc}") from None
    if mode & _NOT_OWNER_BITS:
        raise KeyFileError(
            f"{path}: key file mode is {mode:04o}, readable or writable by group or others;"
            f" run: chmod 600 {path}"
        )


_SM2_PRIVATE = re.compile(r"[0-9a-fA-F]{64}")
_SM2_PUBLIC = re.compile(r"[0-9a-fA-F]{128}")


def _toml_table(path: Path) -> dict[str, object]:
    raw = _read(path)
    try:
        return toml_read.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeyFileError(f"{path}: not valid TOML: {exc}") from None


def load_sm2_pair(path: Path) -> tuple[str, str]:
    """The device's SM2 key pair from ``private = "<64 hex>"`` and ``public = "<128 hex>"``.

    Owner-only permissions are required (:func:`check_owner_only`), and the
    public key must belong to the private one (a mixed-up file is refused).
    """
    from uplink.crypto import sm2_public_from_private

    check_owner_only(path)
    table = _toml_table(path)
    private, public = table.get("private"), table.get("public")
    if not isinstance(private, str) or not _SM2_PRIVATE.fullmatch(private):
        raise KeyFileError(f'{path}: expected private = "<64 hex digits>"')
    if not isinstance(public, str) or not _SM2_PUBLIC.fullmatch(public):
        raise KeyFileError(f'{path}: expected public = "<128 hex digits>"')
    if sm2_public_from_private(private.lower()) != public.lower():
        raise KeyFileError(f"{path}: public key does not belong to the private key")
    return private.lower(), public.lower()


def load_sm2_public(path: Path) -> str:
    """An SM2 public key (the platform's) from ``public = "<128 hex>"``; not secret."""
    public = _toml_table(path).get("public")
    if not isinstance(public, str) or not _SM2_PUBLIC.fullmatch(public):
        raise KeyFileError(f'{path}: expected public = "<128 hex digits>"')
    return public.lower()
