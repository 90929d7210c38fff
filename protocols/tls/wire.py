"""Veeder-Root TLS serial interface ("VR protocol"): the wire primitives, sans-IO.

Sources: TLS-300/350 Serial Interface Manual 576013-635 Rev U ("3xx manual")
§5 command format, §6.1 computer-format response, §6.3 ASCII floating point;
the TLS-4xx manual 577013-950 Rev T agrees on all of it; protocols.md §1.

- Command (§5): ``SOH [security code, 6 chars] function code (6 chars) [data]``;
  no ETX, no checksum. We only ever send computer-format (lower-case ``i``)
  *inquiries* of :data:`READ_ONLY_FUNCTIONS` (SPEC D20: the gauge is never
  configured by us); :func:`build_command` refuses anything else.
- Response (§6.1): ``SOH function-code data && CCCC ETX``; ``CCCC`` is four
  ASCII-hex digits, the 16-bit two's complement of the byte sum from SOH
  through ``&&``: ``sum + CCCC ≡ 0 (mod 0x10000)`` (:func:`checksum`).
- Floats (§6.3): 8 ASCII-hex digits of a big-endian IEEE-754 single.

Decimal reading of a float (our choice, documented here once): a float32
denotes many decimals; :func:`float32_decimal` returns the *shortest* decimal
that converts back to the very same 32 bits (``4243E148`` → ``48.97``, not
``48.970001220703125``). It is lossless — the wire bits can be rebuilt from
it — and it is the number the console meant, so nothing downstream ever sees
float noise. :func:`decimal_string` then gives the platform its fixed-places
strings per quantity (:data:`QUANTITY_PLACES`).
"""

from __future__ import annotations

import math
import re
import struct
from decimal import ROUND_HALF_UP, Decimal

from protocols.base import ForbiddenCommand

SOH = 0x01  # §5: start of every command and response
ETX = 0x03  # §6.1: end of a response (fixed Control-C unless S53100 changed it)
ESC = 0x1B  # §5: a host sends ESC to halt a response in progress
CR, LF = 0x0D, 0x0A

#: §6.1: the fixed tag before the checksum, and the tail ``&& CCCC ETX``.
CHECKSUM_TAG = b"&&"
TRAILER_LEN = len(CHECKSUM_TAG) + 4 + 1

#: §5: the console's whole answer to a function code it does not recognise.
#: FF1B is the checksum of ``SOH 9999`` (there is no ``&&`` in this reply).
UNKNOWN_COMMAND_REPLY = b"\x019999FF1B\x03"

#: §5: the RS-232 security code is six characters long.
SECURITY_CODE_LEN = 6

#: §5 / §7: a function code is six characters: ``i`` + 3-char code + ``TT``.
FUNCTION_LEN = 6

#: §7.0: ``TT`` is two decimal digits; 00 = all devices.
MAX_DEVICE = 99

#: The only functions we may send (SPEC D20, protocols.md §1): computer-format
#: inquiries that read, never set. i201 inventory, i202 deliveries, i20C last
#: delivery, i205 tank status (alarms), i206 tank alarm history, i207 leak test
#: history, i208 leak test results, i101 system status. ``s…`` (set) functions,
#: the upper-case display format and every other code are refused.
READ_ONLY_FUNCTIONS: frozenset[str] = frozenset(
    {"i201", "i202", "i20C", "i205", "i206", "i207", "i208", "i101"}
)

#: Functions that take no device number: the manual only shows ``i10100``.
SYSTEM_FUNCTIONS: frozenset[str] = frozenset({"i101"})

#: §6.3.1: big-endian IEEE-754 single precision. ``struct``, not construct: a
#: single scalar on the hot path (the shortest-decimal search packs up to 9
#: candidates per field), where construct costs ~20× more per call.
FLOAT32 = struct.Struct(">f")

#: Significant digits that always round-trip a float32 (FLT_DECIMAL_DIG).
_F32_MAX_DIGITS = 9

#: A float field of an inactive device (§7.0: "filled out with question marks").
UNKNOWN_FLOAT = "?" * 8

_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")


def checksum(message: bytes) -> int:
    """§6.1 checksum of ``message`` (SOH through ``&&``): ``-sum mod 0x10000``."""
    return -sum(message) & 0xFFFF


def frame_response(function: str, data: str) -> bytes:
    """A computer-format response (§6.1): ``SOH function data && CCCC ETX``."""
    body = b"\x01" + (function + data).encode("ascii") + CHECKSUM_TAG
    return body + f"{checksum(body):04X}".encode("ascii") + bytes([ETX])


def canonical_function(code: str) -> str:
    """``i20c`` → ``i20C``: the manual spells the hex digits of a code in upper case."""
    if len(code) == 4 and code[0] == "i":
        return "i" + code[1:].upper()
    return code


def build_command(code: str, tank: int = 0, *, security_code: str | None = None) -> bytes:
    """The command bytes for a read-only inquiry (§5): ``SOH [code] iXXXTT``.

    ``code`` is a computer-format function such as ``"i201"``; ``tank`` is the
    device number ``TT`` (0 = all). Raises :class:`~protocols.base.ForbiddenCommand`
    for anything outside :data:`READ_ONLY_FUNCTIONS` (set commands, display
    format, unknown codes) and :class:`ValueError` for a bad tank or code.
    """
    function = canonical_function(code)
    if function not in READ_ONLY_FUNCTIONS:
        raise ForbiddenCommand(
            f"TLS function {code!r} is not a read-only inquiry we may send "
            f"(allowed: {', '.join(sorted(READ_ONLY_FUNCTIONS))})"
        )
    if not 0 <= tank <= MAX_DEVICE:
        raise ValueError(f"tank must be 0..{MAX_DEVICE}, got {tank}")
    if function in SYSTEM_FUNCTIONS and tank != 0:
        raise ValueError(f"{function} takes no device number (TT must be 00)")
    prefix = b""
    if security_code is not None:
        if len(security_code) != SECURITY_CODE_LEN or not all(
            " " <= c <= "~" for c in security_code
        ):
            raise ValueError("security code must be 6 printable ASCII characters")
        prefix = security_code.encode("ascii")
    return b"\x01" + prefix + f"{function}{tank:02d}".encode("ascii")


# ---------------------------------------------------------------- floats


def parse_float_hex(text: str) -> Decimal | None:
    """8 ASCII-hex chars → the shortest round-trip :class:`Decimal` (module doc).

    ``????????`` (inactive device, §7.0) → None. Raises :class:`ValueError` for
    anything else that is not 8 hex digits, and for NaN / infinity, which no
    gauge quantity can be.
    """
    if text == UNKNOWN_FLOAT:
        return None
    if not _HEX8.fullmatch(text):
        raise ValueError(f"float field {text!r} is not 8 hex digits")
    return float32_decimal(bytes.fromhex(text))


def float32_decimal(raw: bytes) -> Decimal:
    """The shortest decimal whose float32 rounding is exactly ``raw`` (4 bytes)."""
    try:
        (value,) = FLOAT32.unpack(raw)
    except struct.error as exc:
        raise ValueError("a float32 is 4 bytes") from exc
    if not math.isfinite(value):
        raise ValueError(f"float field {raw.hex().upper()} is not a finite number")
    if value == 0:
        return Decimal(0)  # §6.3.1.4: 00000000 is 0.0 (and -0.0 is 0 too)
    # The first digit count that round-trips (linear: a bisection could miss a
    # shorter one at a power of two, where the rounding interval is lopsided).
    text = next(
        (t for t in (f"{value:.{d}g}" for d in range(1, _F32_MAX_DIGITS)) if _round_trips(t, raw)),
        f"{value:.{_F32_MAX_DIGITS}g}",  # FLT_DECIMAL_DIG digits always round-trip
    )
    return _plain(Decimal(text))


def _round_trips(text: str, raw: bytes) -> bool:
    try:
        return FLOAT32.pack(float(text)) == raw
    except OverflowError:  # rounded up past the largest float32
        return False


def encode_float(value: Decimal | float | int | None) -> str:
    """A value as §6.3 ASCII hex (upper case); None → ``????????`` (§7.0)."""
    if value is None:
        return UNKNOWN_FLOAT
    try:
        raw = FLOAT32.pack(float(value))
    except OverflowError as exc:
        raise ValueError(f"{value} does not fit a float32") from exc
    return raw.hex().upper()


def _plain(value: Decimal) -> Decimal:
    """``1E+4`` → ``10000``: no exponent notation in anything we emit."""
    return Decimal(format(value, "f"))


# ---------------------------------------------------------------- decimal strings

#: Places of the decimal strings the platform gets, per quantity. The console
#: reports in the units it is set up for; Chinese stations use litres,
#: millimetres and °C (platform-interface.md: ``volume_l``, ``height_mm``,
#: ``temp_c``, ``rate_lph``). Rounding is half up (四舍五入).
QUANTITY_PLACES: dict[str, int] = {
    # 0.01 L: the dispensers' volume resolution (protocols.md §2, VOL in
    # 0.01 L), so deliveries − sales − Δinventory (A8) reconcile in one unit;
    # a float32 still resolves 0.01 L up to 131 072 L (ulp 0.0078 L).
    "volume": 2,
    # 0.01 mm: magnetostrictive probes resolve about 0.01 mm; a float32
    # resolves 0.0002 mm at a 4 m tank diameter.
    "height": 2,
    # 0.01 °C: what the display format shows (§7.2.2 i201, "37.39").
    "temperature": 2,
    # 0.001 L/h: leak rates are compared with 0.1 gal/h = 0.379 L/h limits.
    "rate": 3,
    # 0.01 h: leak-test durations (§7.2.2 i207/i208 send hours as floats).
    "hours": 2,
    # 0.1 %: i207 "% volume" is shown with one place.
    "percent": 1,
    # 4xx i20C mass and density extras: kg and kg/m³ to 0.01.
    "other": 2,
}


def decimal_string(value: Decimal | None, quantity: str) -> str | None:
    """``value`` with the places of ``quantity`` (:data:`QUANTITY_PLACES`); None stays None.

    Rounds the shortest round-trip decimal (module doc), i.e. the value the
    console meant, half up: ``48.97`` → ``"48.97"``, ``4941`` → ``"4941.00"``.
    """
    if value is None:
        return None
    places = QUANTITY_PLACES[quantity]
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return format(abs(rounded) if rounded == 0 else rounded, "f")  # never "-0.00"
