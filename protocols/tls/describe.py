"""``forecourt decode --protocol tls``: every response in a capture, or why not.

:func:`describe` returns one JSON-able dict per response found or rejected::

    {"ok": true, "offset": n, "protocol": "tls", "message": "i201",
     "function": "i20100", "report": {...}}
    {"ok": false, "offset": n, "protocol": "tls", "error": KIND, "detail": "..."}

``KIND`` is a :class:`~protocols.tls.decoder.TlsError` kind: ``garbage``,
``truncated`` (also a response still open at the end of the capture),
``aborted``, ``bad_checksum``, ``unknown_command`` or ``layout``. In
``report``, decimals are strings (the shortest decimal of the float32, see
:mod:`protocols.tls.wire`), times ISO 8601, alarm codes numbers with their
names alongside. CR/LF between responses produce no line.

:func:`parse_text_frame` turns what a technician pastes into bytes: the
response as text with ``\\x01`` / ``\\x03`` escapes (``<SOH>`` / ``<ETX>`` as
the manual writes them work too), or hex with or without spaces.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from protocols.tls.decoder import TlsError, decode_at
from protocols.tls.reports import (
    LEAK_REPORT_TYPES,
    LEAK_TEST_RESULTS,
    LEAK_TEST_TYPES,
    RawResponse,
    Report,
    SystemAlarm,
    TankAlarmCode,
    TankAlarms,
    TankInventory,
)

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\([\\rnt])|<(SOH|ETX|ESC|CR|LF)>")
_NAMED = {"SOH": 0x01, "ETX": 0x03, "ESC": 0x1B, "CR": 0x0D, "LF": 0x0A}
_BACKSLASH = {"\\": 0x5C, "r": 0x0D, "n": 0x0A, "t": 0x09}
_HEX_NOISE = re.compile(r"0x|[\s,:;\-]", re.IGNORECASE)
_HEX_ONLY = re.compile(r"(?:[0-9a-fA-F]{2})+")


def parse_text_frame(text: str) -> bytes:
    """A pasted capture → bytes.

    Hex (``01 69 32 …``, ``016932…``, ``0x01,0x69``) when the text is nothing
    but hex digit pairs and separators — a text frame always holds its SOH as
    ``\\x01`` or ``<SOH>`` and letters such as ``i``, so it is never all hex.
    Otherwise text: printable ASCII kept as is, ``\\xNN``, ``\\r``,
    ``\\n``, ``\\\\`` and ``<SOH>``-style names replaced by their bytes.
    Literal whitespace is dropped — line wraps of the paste, the spaces
    between shell arguments — because a computer-format response holds none
    (§6.1); write a space product code as ``\\x20``.
    Raises :class:`ValueError` for characters outside ASCII.
    """
    stripped = "".join(text.split())
    digits = _HEX_NOISE.sub("", stripped)
    if digits and _HEX_ONLY.fullmatch(digits):
        return bytes.fromhex(digits)
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(stripped):
        out += _ascii(stripped[pos : m.start()])
        if m.group(1):
            out.append(int(m.group(1), 16))
        elif m.group(2):
            out.append(_BACKSLASH[m.group(2)])
        else:
            out.append(_NAMED[m.group(3)])
        pos = m.end()
    out += _ascii(stripped[pos:])
    return bytes(out)


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not ASCII: {text[exc.start]!r} at {exc.start}") from exc


def jsonable(value: Any) -> Any:
    """A report (or part of one) as JSON-able data; decimals as strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out.update(_extras(value))
        return out
    return value


def _extras(value: Any) -> dict[str, Any]:
    """Names of coded fields and derived flags, for humans reading the JSON."""
    if isinstance(value, TankInventory):
        return {
            "delivery_in_progress": value.delivery_in_progress,
            "leak_test_in_progress": value.leak_test_in_progress,
            "invalid_height": value.invalid_height,
            "inactive": value.inactive,
        }
    if isinstance(value, SystemAlarm):
        return {"name": value.name}
    extras: dict[str, Any] = {}
    for name, table in (
        ("report_type", LEAK_REPORT_TYPES),
        ("test_type", LEAK_TEST_TYPES),
        ("result", LEAK_TEST_RESULTS),
    ):
        code = getattr(value, name, None)
        if isinstance(code, int):
            extras[f"{name}_name"] = table.get(code, f"UNKNOWN_{code:02d}")
    code = getattr(value, "code", None)
    if isinstance(code, enum.IntEnum):
        extras["name"] = code.name
    return extras


def _report_json(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(report)
    if isinstance(report, TankAlarms):
        out["names"] = {
            str(tank): [
                c.name if isinstance(c, TankAlarmCode) else f"UNKNOWN_{c:02d}" for c in codes
            ]
            for tank, codes in report.tanks.items()
        }
    return out


def describe(data: bytes) -> list[dict[str, Any]]:
    """Every response in ``data``, or why a stretch of it was rejected."""
    lines: list[dict[str, Any]] = []
    pos = 0
    while pos < len(data):
        item, consumed = decode_at(data, pos)
        if consumed == 0:  # a response still open at the end of the capture
            item = TlsError("truncated", f"no ETX before the end ({len(data) - pos} bytes)")
            consumed = len(data) - pos
        if isinstance(item, TlsError):
            lines.append(
                {
                    "ok": False,
                    "offset": pos,
                    "protocol": "tls",
                    "error": item.kind,
                    "detail": item.detail,
                }
            )
        elif item is not None:
            function = item.function
            message = function[:4] if isinstance(item, RawResponse) else function
            line: dict[str, Any] = {"ok": True, "offset": pos, "protocol": "tls"}
            line["message"] = message
            line["function"] = (
                function if isinstance(item, RawResponse) else f"{function}{item.query:02d}"
            )
            line["report"] = _report_json(item)
            lines.append(line)
        pos += consumed
    return lines


__all__ = ["describe", "jsonable", "parse_text_frame"]
