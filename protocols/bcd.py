"""Packed BCD, most significant digit first, as most Chinese dispenser wires carry numbers.

Shared by the protocol packages whose fields are plain packed BCD with an
implied decimal point (the point is a site setting, never on the wire:
docs/brands.md "Decimal places").
"""

from __future__ import annotations

from decimal import Decimal


def bcd_encode(value: int, width: int) -> bytes:
    """``value`` as ``width`` bytes of packed BCD, most significant digit first."""
    digits = f"{value:0{2 * width}d}"
    if value < 0 or len(digits) != 2 * width:
        raise ValueError(f"{value} does not fit {width} BCD bytes")
    return bytes.fromhex(digits)


def bcd_decode(raw: bytes) -> int | None:
    """Packed BCD → int; None when a nibble is above 9."""
    digits = raw.hex()
    return int(digits) if digits.isdigit() else None


def scaled(raw: int, decimals: int) -> Decimal:
    """A raw count with ``decimals`` implied places (``scaled(1234, 2)`` = 12.34)."""
    return Decimal(raw).scaleb(-decimals)
