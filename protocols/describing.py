"""The walk every ``forecourt decode`` describer shares: a capture in, one
dict per frame found or stretch rejected out, in stream order.

A protocol's describer supplies its framer's pure ``decode_at(buf, pos)``
(protocols/stream.py), where the next frame may start (for the bytes a
capture ends inside of), the frame type, and how one frame is told; the
rejected stretches read the same for every protocol
(``{"ok": False, "offset", "error", "detail"}``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from protocols.bcd import scaled
from protocols.events import ProtocolError

Frame = TypeVar("Frame")

#: Decimal places ``values`` show on a wire whose describer takes no setting
#: (Furen, Uninfo, UDC, Censtar: the common setting; docs/protocols/udc.md,
#: docs/protocols/censtar.md).
DECIMALS = 2


def decimal_text(raw: int, decimals: int = DECIMALS) -> str:
    """A raw count as ``values`` show it (``decimal_text(1234)`` = "12.34")."""
    return str(scaled(raw, decimals))


def walk(
    data: bytes,
    decode_at: Callable[[bytes, int], tuple[Frame | ProtocolError | None, int]],
    frame_type: type[Frame],
    tell: Callable[[Frame, int], dict[str, Any]],
    *,
    next_start: Callable[[bytes, int], int] | None = None,
    protocol: str | None = None,
) -> list[dict[str, Any]]:
    """Each frame of ``data`` told by ``tell(frame, offset)``, each rejected
    stretch as an error. A capture that ends inside a frame ends in
    ``truncated``: up to the next start ``next_start`` finds, else the rest.
    ``protocol``, when given, is named in the errors too."""
    out: list[dict[str, Any]] = []
    pos = 0
    while pos < len(data):
        result, consumed = decode_at(data, pos)
        if result is None:  # the capture ends inside a frame
            nxt = next_start(data, pos + 1) if next_start is not None else -1
            consumed = (nxt if nxt >= 0 else len(data)) - pos
            detail = f"incomplete frame of {consumed} bytes at the end of the capture"
            result = ProtocolError("truncated", detail)
        if isinstance(result, frame_type):
            out.append(tell(result, pos))
        else:
            assert isinstance(result, ProtocolError)
            out.append(rejected(pos, result.kind, result.detail, protocol))
        pos += consumed
    return out


def rejected(offset: int, kind: str, detail: str, protocol: str | None = None) -> dict[str, Any]:
    """A rejected stretch or frame: ``protocol`` named when given."""
    line: dict[str, Any] = {"ok": False, "offset": offset}
    if protocol is not None:
        line["protocol"] = protocol
    return line | {"error": kind, "detail": detail}


def accepted(
    offset: int,
    protocol: str,
    message: str,
    fields: dict[str, Any],
    values: dict[str, Any],
    **header: Any,
) -> dict[str, Any]:
    """An accepted frame: what it is, the frame's own ``header`` keys (in
    the order given), its raw ``fields`` and their ``values``."""
    line = {"ok": True, "offset": offset, "protocol": protocol, "message": message}
    return line | header | {"fields": fields, "values": values}


#: A message's raw ``fields`` and their ``values`` (UDC, Censtar).
Described = tuple[dict[str, Any], dict[str, Any]]

#: What a message reader makes of a frame: (message, fields, values).
Told = tuple[str, dict[str, Any], dict[str, Any]]


def told(
    offset: int,
    protocol: str,
    result: Told | ProtocolError,
    where: dict[str, int],
    data: bytes,
    **header: Any,
) -> dict[str, Any]:
    """An FA frame (Sinopec, Furen) as its message reader ``result`` tells it:
    accepted with ``header``, or a ``bad_message`` naming the frame's
    address bytes ``where`` and its ``data``."""
    if isinstance(result, ProtocolError):
        at = ", ".join(f"{k} {v:02X}" for k, v in where.items())
        detail = f"{result.detail} ({at}; data {data.hex(' ').upper()})"
        return {"ok": False, "offset": offset, "error": "bad_message", "detail": detail}
    message, fields, values = result
    return accepted(offset, protocol, message, fields, values, **header)


def shown(
    offset: int, protocol: str, described: Described | str, where: str, header: dict[str, Any]
) -> dict[str, Any]:
    """A request or reply read as ``described`` (fields, values) with its
    ``header`` keys first; or, when its reading gave why not (text), a
    ``bad_message`` that says ``where`` (UDC, Censtar)."""
    if isinstance(described, str):
        detail = f"{described} ({where})"
        return {"ok": False, "offset": offset, "error": "bad_message", "detail": detail}
    fields, values = described
    line = {"ok": True, "offset": offset, "protocol": protocol}
    return line | header | {"fields": fields, "values": values}


def decimals_describer(
    protocol: str,
    decode_at: Callable[[bytes, int], tuple[Frame | ProtocolError | None, int]],
    frame_type: type[Frame],
    tell: Callable[[int, Frame, tuple[int, int, int]], dict[str, Any]],
) -> Callable[..., list[dict[str, Any]]]:
    """The ``describe`` of a self-delimiting framer whose values take the
    port's three decimal places (CK1313, Lanfeng): ``tell(offset, frame,
    (volume, amount, price))``."""

    def describe(
        data: bytes,
        *,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
    ) -> list[dict[str, Any]]:
        """Every frame and byte run of ``data``, accepted or rejected."""
        dp = (volume_decimals, amount_decimals, price_decimals)
        return walk(data, decode_at, frame_type, lambda f, at: tell(at, f, dp), protocol=protocol)

    return describe
