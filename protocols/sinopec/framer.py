"""Sinopec card-dispenser link (卡机联动 V1.1) framing, sans-IO.

Frame layout (protocols.md §2, "Frame")::

    FA | dst | src | ctrl | LEN (2 B BCD) | data (LEN bytes, data[0] = command) | CRC16 (2 B)

- ``LEN`` is the number of data bytes as four BCD digits, high byte first
  (``00 96`` = 96); escape bytes are not counted (protocols.md §2).
- ``CRC16`` is CRC-16/ARC (:func:`protocols.crc.crc16_arc`) over ``dst`` … last
  data byte, high byte first; the leading FA is not covered (protocols.md §2).
- Escape: every 0xFA from ``dst`` to the last CRC byte is sent doubled
  (``FA FA``); the leading FA is not (protocols.md §2).
- Sync: a frame starts at a *lone FA*, an FA whose next byte is not FA.

Decoding assumptions:

- ``dst`` is never 0xFA: pumps use small logical numbers and the POS side
  0xE0–0xF9 (protocols.md §2, "Addresses"). So a real frame start is always
  an FA followed by a non-FA byte, and scanning for lone FAs never misses one.
- An escaped ``FA FA`` followed by another byte also contains a lone FA (the
  second one). Where a frame is expected (right after the previous one) the
  lone FA is taken as is; when searching through bytes that are *not* a
  frame, a lone FA counts as a *frame start* only if what follows is
  plausible: a good frame, a frame still incomplete, or one with a bad CRC.
  A lone FA followed by a non-BCD / out-of-range length, or by another lone
  FA before its end, is an escaped FA inside noise and is skipped with it.
- ``LEN`` 0 is invalid (the data always holds at least the command byte) and
  ``LEN`` above :data:`MAX_DATA_LEN` is treated as line noise.

Recovery — every case the decoder handles, and what it reports:

- *Garbage before a frame* (bytes up to the next frame start, stray
  ``FA FA`` pairs and implausible lone FAs included): skipped, ONE
  ``ProtocolError("garbage", "N bytes skipped")`` per run, N counted in
  ``garbage_bytes``.
- *Garbage between / after frames*: the same rule — it is garbage before the
  next frame start. Trailing garbage with nothing behind it is reported as
  soon as it arrives, except a final single FA, kept because it may be the
  start of the next frame.
- *Garbage inside a frame*: the CRC (or the length) no longer matches → the
  bad-CRC / bad-length case; if the garbage holds a lone FA → truncated case.
- *Bad CRC*: ``ProtocolError("bad_crc")``; the decoder hunts for the next
  frame start *after the bad frame's start* — not after its end, because a
  frame cut short right after an ``FA`` swallows the next frame's leading FA
  as an escape pair, and that frame must still be found. The bytes skipped
  while hunting (those already received) belong to this error.
- *Bad length / oversize length* (a LEN nibble above 9, LEN 0, or LEN >
  :data:`MAX_DATA_LEN`): ``ProtocolError("bad_length")`` as soon as the
  header is in — never waits for a bogus length's worth of bytes — then the
  same hunt as for a bad CRC.
- *Truncated frame*: a lone FA inside a frame means the frame stopped and a
  new one started: ``ProtocolError("truncated")``, then the same hunt from
  the cut frame's start (it finds the FA that cut it, or a frame the cut one
  had swallowed). A frame cut short with nothing behind it stays buffered
  until more bytes arrive (then it is one of the cases above) or until
  :meth:`FrameDecoder.flush` (the driver calls it when a response deadline
  passes), which reports it and decodes whatever complete frames it hid.

Good frames never depend on how the bytes were split into reads. Error
reports can: a candidate start still incomplete at the end of one read and
proven bogus by the next is reported by its own kind instead of as garbage.

Style: h11 / pymodbus. :func:`decode` is pure (buffer in, one result and the
number of bytes consumed out); :class:`FrameDecoder` adds the buffer. A frame
with no FA after its start (most of them) is sliced out instead of walked
byte by byte; a test holds both paths to the same results.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import Bytes, Int8ub, Int16ub, Struct

from protocols.crc import crc16_arc
from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder

#: Frame sync byte and escape byte (protocols.md §2).
SYNC = 0xFA
_SYNC_BYTES = b"\xfa"
_ESCAPED_SYNC = b"\xfa\xfa"

#: dst, src, ctrl and the two LEN bytes (protocols.md §2).
HEADER_LEN = 5

#: CRC16, high byte first (protocols.md §2).
CRC_LEN = 2

#: Largest data length accepted. LEN can say up to 9999, but the largest
#: message we ever solicit is the 96-byte transaction record (command + 95 B,
#: protocols.md §2) and a 31 report for 8 nozzles with cards inserted is 146
#: bytes; 256 leaves room for longer pumps while a garbled length is rejected
#: at once instead of swallowing ~20 kB of good frames while we wait.
MAX_DATA_LEN = 256

#: Longest possible frame on the wire: every byte after the leading FA doubled.
MAX_WIRE_FRAME = 1 + 2 * (HEADER_LEN + MAX_DATA_LEN + CRC_LEN)

#: Bound of :class:`FrameDecoder`'s buffer. After each drain it holds at most
#: one incomplete frame (< MAX_WIRE_FRAME); the same again of new input per
#: step guarantees progress while keeping memory per line fixed.
MAX_BUFFER = 2 * MAX_WIRE_FRAME

#: ctrl bits 0–5 carry the frame number (protocols.md §2, "ctrl").
FRAME_NO_MASK = 0x3F

HEADER = Struct(
    "dst" / Int8ub,
    "src" / Int8ub,
    "ctrl" / Int8ub,
    "length" / Bytes(2),  # BCD, see bcd_encode / bcd_decode
).compile()

CRC = Int16ub  # high byte first (protocols.md §2)


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


@dataclass(frozen=True)
class Frame:
    """One frame without its framing: addresses, ctrl and the data bytes."""

    dst: int
    src: int
    ctrl: int
    data: bytes

    def __post_init__(self) -> None:
        for name in ("dst", "src", "ctrl"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be one byte")
        if not 1 <= len(self.data) <= MAX_DATA_LEN:
            raise ValueError(f"data must hold 1..{MAX_DATA_LEN} bytes (the command first)")

    @property
    def frame_no(self) -> int:
        """Frame number, ctrl bits 0–5 (protocols.md §2)."""
        return self.ctrl & FRAME_NO_MASK

    @property
    def command(self) -> int:
        """Command code, the first data byte (protocols.md §2)."""
        return self.data[0]


def encode_frame(frame: Frame) -> bytes:
    """The frame as sent on the wire: header, data, CRC, every inner FA doubled."""
    body = (
        HEADER.build(
            {
                "dst": frame.dst,
                "src": frame.src,
                "ctrl": frame.ctrl,
                "length": bcd_encode(len(frame.data), 2),
            }
        )
        + frame.data
    )
    raw = body + CRC.build(crc16_arc(body))
    return _SYNC_BYTES + raw.replace(_SYNC_BYTES, _ESCAPED_SYNC)


Buffer = bytes | bytearray
Result = Frame | ProtocolError


def _find_sync(buf: Buffer, pos: int) -> int:
    """Index of the first lone FA at or after ``pos`` (next byte known, not FA), or -1."""
    end = len(buf) - 1  # the FA needs a successor to be known lone
    i = buf.find(_SYNC_BYTES, pos)
    while 0 <= i < end:
        if buf[i + 1] != SYNC:
            return i
        i = buf.find(_SYNC_BYTES, i + 1)
    return -1


def _skippable(buf: Buffer, start: int) -> int:
    """Bytes from ``start`` that hold no lone FA, keeping a final FA for later."""
    end = len(buf)
    return end - start - (1 if end > start and buf[end - 1] == SYNC else 0)


def _parse_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """Parse the frame whose lone FA is at ``start``.

    Returns ``(Frame, n)``, ``(None, 0)`` when more bytes are needed, or
    ``(ProtocolError, 0)``: the caller then hunts (:func:`_hunt`).
    """
    fast = _parse_unescaped(buf, start)
    return _parse_escaped(buf, start) if fast is None else fast


def _parse_escaped(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """:func:`_parse_at` byte by byte, undoing escapes (any frame)."""
    body = bytearray()
    need = HEADER_LEN
    i, n = start + 1, len(buf)
    while len(body) < need:
        if i >= n:
            return None, 0
        byte = buf[i]
        if byte == SYNC:
            if i + 1 >= n:
                return None, 0  # FA FA or a new lone FA: the next byte decides
            if buf[i + 1] != SYNC:
                return ProtocolError("truncated", f"frame cut after {i - start} bytes"), 0
            i += 2
        else:
            i += 1
        body.append(byte)
        if len(body) == HEADER_LEN and need == HEADER_LEN:
            raw_len = HEADER.parse(bytes(body)).length
            length = bcd_decode(raw_len)
            if length is None or not 1 <= length <= MAX_DATA_LEN:
                detail = f"LEN {raw_len.hex(' ').upper()} is not BCD 1..{MAX_DATA_LEN}"
                return ProtocolError("bad_length", detail), 0
            need = HEADER_LEN + length + CRC_LEN
    return _checked(bytes(body), i - start)


def _parse_unescaped(buf: Buffer, start: int) -> tuple[Result | None, int] | None:
    """:func:`_parse_at` for the usual frame with no FA after its start: slices
    instead of a byte loop. None when an FA is in the way (the slow path then)."""
    first, n = start + 1, len(buf)
    if buf.find(_SYNC_BYTES, first, first + HEADER_LEN) >= 0:
        return None
    if n < first + HEADER_LEN:
        return None, 0
    raw_len = bytes(buf[first + 3 : first + HEADER_LEN])
    length = bcd_decode(raw_len)
    if length is None or not 1 <= length <= MAX_DATA_LEN:
        detail = f"LEN {raw_len.hex(' ').upper()} is not BCD 1..{MAX_DATA_LEN}"
        return ProtocolError("bad_length", detail), 0
    end = first + HEADER_LEN + length + CRC_LEN
    if buf.find(_SYNC_BYTES, first, min(end, n)) >= 0:
        return None
    if end > n:
        return None, 0
    return _checked(bytes(buf[first:end]), end - start)


def _checked(body: bytes, consumed: int) -> tuple[Result, int]:
    """Header + data + CRC, unescaped: the frame, or a bad-CRC error."""
    payload, got = body[:-CRC_LEN], CRC.parse(body[-CRC_LEN:])
    want = crc16_arc(payload)
    if got != want:
        return ProtocolError("bad_crc", f"CRC {got:04X}, computed {want:04X}"), 0
    header = HEADER.parse(payload[:HEADER_LEN])
    frame = Frame(dst=header.dst, src=header.src, ctrl=header.ctrl, data=payload[HEADER_LEN:])
    return frame, consumed


def _next_start(buf: Buffer, pos: int) -> int:
    """The first lone FA at or after ``pos`` that begins a plausible frame, or -1.

    Plausible: a good frame, one still incomplete, or one with a bad CRC. A
    lone FA followed by a bad length or cut short by another lone FA is an
    escaped FA inside other bytes, not a frame start.
    """
    i = _find_sync(buf, pos)
    while i >= 0:
        result, _ = _parse_at(buf, i)
        if result is None or isinstance(result, Frame) or result.kind == "bad_crc":
            return i
        i = _find_sync(buf, i + 1)
    return -1


def _hunt(buf: Buffer, start: int) -> int:
    """Bytes to consume after a bad frame at ``start``: up to the next frame start."""
    nxt = _next_start(buf, start + 1)
    consumed = nxt - start if nxt >= 0 else _skippable(buf, start)
    return max(consumed, 1)


def decode_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """:func:`decode` of ``buf[start:]`` without copying it."""
    if start >= len(buf):
        return None, 0
    if _find_sync(buf, start) != start:
        nxt = _next_start(buf, start)
        skip = nxt - start if nxt >= 0 else _skippable(buf, start)
        if skip == 0:
            return None, 0
        return ProtocolError("garbage", f"{skip} bytes skipped"), skip
    result, consumed = _parse_at(buf, start)
    if isinstance(result, ProtocolError):
        consumed = _hunt(buf, start)
    return result, consumed


def decode(buffer: Buffer) -> tuple[Result | None, int]:
    """Decode the first thing in ``buffer``; say how many bytes it took.

    Returns ``(Frame, n)``, ``(ProtocolError, n)`` (bytes to drop, see the
    module doc for every case) or ``(None, 0)`` when more bytes are needed.
    """
    return decode_at(buffer, 0)


class FrameDecoder(BufferedDecoder[Frame | ProtocolError]):
    """Buffers partial frames across reads; see the module doc for recovery."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ("bad_crc", "bad_length", "truncated")
    ERROR_TYPE = ProtocolError

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Frame | ProtocolError | None, int]:
        return decode_at(buf, pos)

    def flush(self) -> list[Frame | ProtocolError]:
        """No more bytes are coming for now (a response deadline passed).

        The incomplete frame at the head of the buffer is given up and reported
        ``truncated``; frames it had swallowed (a bogus start in noise can
        swallow a good frame behind it) are still decoded and returned. The
        buffer is empty afterwards.
        """
        out: list[Frame | ProtocolError] = []
        buf = self._buffer
        while buf:
            nxt = _next_start(buf, 1)
            cut = nxt if nxt >= 0 else len(buf)
            out.append(ProtocolError("truncated", f"incomplete frame of {cut} bytes dropped"))
            self.counters["truncated"] += 1
            del buf[:cut]
            self._drain(out)
        return out
