"""Censtar framing: ``FC CMD ADDR data… X``, the length fixed by the command
and the direction (protocols/censtar/messages.py, LENGTHS).

Assumptions: a frame starts at ``FC``; its command is one of the table's;
its last byte is the XOR of everything from CMD on (``fangym0335/first
src/lischn005.c:1744, 1764``). Requests and replies share the header — a
reply repeats ``FC CMD ADDR`` (005:1296, 1773) — so a decoder is told which
direction it reads; on one line with both (a tap) the request just seen
decides: a frame with its command (or ``16`` after a ``15``) and address is
tried as its reply first, anything else as a request first, then the other
way.

Recovery, one error per case:

- bytes before an ``FC``, or an ``FC`` whose next byte is no command we
  know: ``garbage``, one per run, skipped to the next ``FC``;
- a frame whose XOR fails (either length, on a tap): ``bad_xor``; the hunt
  for the next ``FC`` starts one byte on (a lost byte shifts the rest);
- a frame cut by the end of the bytes waits for more (at most
  :data:`MAX_BUFFER` are held).

The XOR is weak: two flips of the same bit in one frame cancel. The monitor
adds what the protocol offers beyond it (docs/protocols/censtar.md).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from protocols.censtar.messages import CMD_NO_SALE, CMD_SALE, LENGTHS, START, Frame, xor
from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder

Direction = Literal["request", "reply", "bus"]

Item = Frame | ProtocolError


def _checked(buf: bytes | bytearray, pos: int, length: int, request: bool) -> Frame | None:
    """The frame of ``length`` at ``pos`` if its XOR passes."""
    body = bytes(buf[pos + 1 : pos + length - 1])
    if xor(body) != buf[pos + length - 1]:
        return None
    return Frame(body[0], body[1], body[2:], request)


def _next_start(buf: bytes | bytearray, start: int) -> int:
    found = buf.find(START, start)
    return len(buf) if found < 0 else found


class FrameDecoder(BufferedDecoder[Item]):
    """Frames of one direction, or of both on a tap (``"bus"``)."""

    #: Larger than the longest frame (36 bytes).
    MAX_BUFFER: ClassVar[int] = 256
    ERROR_KINDS: ClassVar[tuple[str, ...]] = ("garbage", "bad_xor")
    ERROR_TYPE: ClassVar[type] = ProtocolError

    def __init__(self, direction: Direction) -> None:
        super().__init__()
        self.direction = direction
        #: The last request on a tap: (command, address), its reply expected.
        self.pending: tuple[int, int] | None = None

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Item | None, int]:
        return decode_at(buf, pos, self.direction, self)


def _order(
    buf: bytes | bytearray, pos: int, direction: Direction, state: FrameDecoder | None
) -> list[tuple[bool, int]]:
    """(as a request?, length) to try at ``pos``, most likely first."""
    command = buf[pos + 1]
    request_len, reply_len = LENGTHS[command]
    if direction == "request":
        return [(True, request_len)] if request_len else []
    if direction == "reply":
        return [(False, reply_len)]
    pending = None if state is None else state.pending
    as_reply = [(False, reply_len)]
    as_request = [(True, request_len)] if request_len else []
    if pending is not None and len(buf) - pos >= 3:
        expected = {pending[0], CMD_NO_SALE} if pending[0] == CMD_SALE else {pending[0]}
        if command in expected and buf[pos + 2] == pending[1]:
            return as_reply + as_request
    return as_request + as_reply


def decode_at(
    buf: bytes | bytearray,
    pos: int,
    direction: Direction,
    state: FrameDecoder | None = None,
) -> tuple[Item | None, int]:
    """What starts at ``pos``: a frame, an error over n bytes, or (None, 0) when
    more bytes are needed. ``state`` (a tap's decoder) holds the request seen last."""
    if pos >= len(buf):
        return None, 0
    if buf[pos] != START:
        nxt = _next_start(buf, pos)
        return ProtocolError("garbage", f"{nxt - pos} bytes before a frame start"), nxt - pos
    if len(buf) - pos < 2:
        return None, 0
    if buf[pos + 1] not in LENGTHS:
        nxt = _next_start(buf, pos + 1)
        return ProtocolError("garbage", f"FC {buf[pos + 1]:02X}: no such command"), nxt - pos
    tries = _order(buf, pos, direction, state)
    if not tries:
        nxt = _next_start(buf, pos + 1)
        return ProtocolError("garbage", f"{buf[pos + 1]:02X} is never a request"), nxt - pos
    for request, length in tries:
        if len(buf) - pos < length:
            return None, 0  # this reading needs more bytes before the next is tried
        frame = _checked(buf, pos, length, request)
        if frame is not None:
            if state is not None and direction == "bus":
                state.pending = (frame.command, frame.address) if request else None
            return frame, length
    nxt = _next_start(buf, pos + 1)
    detail = f"FC {buf[pos + 1]:02X}: XOR does not match ({nxt - pos} bytes skipped)"
    address = buf[pos + 2] if len(buf) - pos > 2 else None
    return ProtocolError("bad_xor", detail, address), nxt - pos
