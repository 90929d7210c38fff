"""SM4 key files: TOML, one ``kid = "32 hex digits"`` per line.

Key material never appears in an error message or a log line: errors name
the file and the kid, and :func:`redact` gives a fingerprint to log instead.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from uplink.crypto import KEY_BYTES, sm3_hex

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


def load_keys(path: Path) -> dict[str, bytes]:
    """Read a key file into {kid: 16-byte key}; raises :class:`KeyFileError`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror or exc}") from None
    try:
        # The decode error message would quote a byte of the file: leave it out.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not UTF-8 text") from None
    try:
        table = tomllib.loads(text)
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
