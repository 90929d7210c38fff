"""Packed BCD, the digit format most Chinese dispenser protocols carry.

The one encoder and decoder of every protocol that carries it (DART, the
FA-framed Sinopec and Furen, CK1313, Lanfeng, UDC, Censtar). Two nibbles
per byte, each 0–9.
"""

from __future__ import annotations

from decimal import Decimal

from protocols.events import ProtocolError


def bcd_encode(value: int, width: int) -> bytes:
    """``value`` as ``width`` bytes of packed BCD, most significant digit first."""
    digits = f"{value:0{2 * width}d}"
    if value < 0 or len(digits) != 2 * width:
        raise ValueError(f"{value} does not fit {width} BCD bytes")
    return bytes.fromhex(digits)


def bcd_decode(raw: bytes) -> int | None:
    """Packed BCD, most significant byte first → int; None when a nibble is above 9."""
    digits = raw.hex()
    return int(digits) if digits.isdigit() else None


def bcd_field(raw: bytes, what: str) -> int | ProtocolError:
    """A message's BCD field ``what``, or the refusal that names it."""
    value = bcd_decode(raw)
    if value is None:
        return ProtocolError("bad_message", f"{what} {raw.hex(' ').upper()} is not BCD")
    return value


def is_bcd(raw: bytes) -> bool:
    return raw.hex().isdigit() or not raw


def scaled(raw: int, decimals: int) -> Decimal:
    """A raw count with ``decimals`` implied places (``scaled(1234, 2)`` = 12.34)."""
    return Decimal(raw).scaleb(-decimals)
