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

from protocols.events import ProtocolError

Frame = TypeVar("Frame")


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
            error: dict[str, Any] = {"ok": False, "offset": pos}
            if protocol is not None:
                error["protocol"] = protocol
            out.append(error | {"error": result.kind, "detail": result.detail})
        pos += consumed
    return out
