"""Frames that open with FA, carry a five-byte header and end in CRC-16/ARC, sans-IO.

Two dispenser families share this shape: the Sinopec card-dispenser link
(protocols.md §2) and Furen Haosheng (``fangym0335/first src/lischn009.c``,
docs/protocols/furen.md). One engine decodes both; a :class:`FaFraming`
instance holds what differs. Layout::

    FA | b1 | b2 | ctrl | LEN (2 B) | data (LEN bytes, data[0] = command) | CRC16 (2 B)

- ``CRC16`` is CRC-16/ARC (:func:`protocols.crc.crc16_arc`) over ``b1`` …
  last data byte, high byte first; the leading FA is not covered.
- Per family (:class:`FaFraming` arguments): how ``LEN`` is written
  (Sinopec: four BCD digits; Furen: a binary count), the largest data
  length accepted, and the **escape rule**: *escaped* framing sends every
  0xFA from ``b1`` to the last CRC byte doubled (``FA FA``), the leading FA
  not; *unescaped* framing sends the bytes as they are.
- Sync, escaped: a frame starts at a *lone FA*, an FA whose next byte is not
  FA. Sync, unescaped: a frame may start at any FA.

Decoding assumptions:

- Escaped: ``b1`` is never 0xFA (Sinopec: pumps use small logical numbers,
  the POS side 0xE0–0xF9), so a real frame start is always a lone FA. An
  escaped ``FA FA`` followed by another byte also contains a lone FA (the
  second one). Where a frame is expected (right after the previous one) the
  lone FA is taken as is; when searching through bytes that are *not* a
  frame, a lone FA counts as a *frame start* only if what follows is
  plausible: a good frame, a frame still incomplete, or one with a bad CRC.
  A lone FA followed by an invalid length, or by another lone FA before its
  end, is an escaped FA inside noise and is skipped with it.
- Unescaped: an FA inside a frame is data. When searching, an FA counts as
  a frame start only if what follows is plausible as above.
- ``LEN`` 0 is invalid (the data always holds at least the command byte) and
  ``LEN`` above the family's maximum is treated as line noise.

Recovery — every case the decoder handles, and what it reports:

- *Garbage before a frame* (bytes up to the next frame start; stray
  ``FA FA`` pairs and implausible FAs included): skipped, ONE
  ``ProtocolError("garbage", "N bytes skipped")`` per run, N counted in
  ``garbage_bytes``.
- *Garbage between / after frames*: the same rule — it is garbage before the
  next frame start. Trailing garbage with nothing behind it is reported as
  soon as it arrives, except what may be the start of the next frame (a
  final single FA when escaped; from the first FA still incomplete when
  unescaped).
- *Garbage inside a frame*: the CRC (or the length) no longer matches → the
  bad-CRC / bad-length case; escaped, if the garbage holds a lone FA → the
  truncated case.
- *Bad CRC*: ``ProtocolError("bad_crc")``; the decoder hunts for the next
  frame start *after the bad frame's start* — not after its end, because a
  frame cut short swallows the start of the frame behind it (escaped: its
  leading FA as an escape pair; unescaped: its first bytes as data), and
  that frame must still be found. The bytes skipped while hunting (those
  already received) belong to this error.
- *Bad length / oversize length* (a LEN that does not decode, LEN 0, or LEN
  above the maximum): ``ProtocolError("bad_length")`` as soon as the header
  is in — never waits for a bogus length's worth of bytes — then the same
  hunt as for a bad CRC.
- *Truncated frame*, escaped only: a lone FA inside a frame means the frame
  stopped and a new one started: ``ProtocolError("truncated")``, then the
  same hunt from the cut frame's start (it finds the FA that cut it, or a
  frame the cut one had swallowed). Unescaped, a frame cut short takes the
  bytes behind it as its own until its length is reached, then fails its
  CRC (the bad-CRC case finds the frame behind it).
- *A frame cut short with nothing behind it* stays buffered until more
  bytes arrive (then it is one of the cases above) or until
  :meth:`FaFrameDecoder.flush` (a driver calls it when a response deadline
  passes), which reports it ``truncated`` and decodes whatever complete
  frames it hid.

Good frames never depend on how the bytes were split into reads. Error
reports can: a candidate start still incomplete at the end of one read and
proven bogus by the next is reported by its own kind instead of as garbage.

Style: h11 / pymodbus. :meth:`FaFraming.decode_at` is pure (buffer in, one
result and the number of bytes consumed out); :class:`FaFrameDecoder` adds
the buffer. A frame with no FA after its start (most of them) is sliced out
instead of walked byte by byte; a test holds both paths to the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from protocols.crc import crc16_arc
from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder

#: Frame sync byte, and the escape byte of escaped framing.
SYNC = 0xFA
_SYNC_BYTES = b"\xfa"
_ESCAPED_SYNC = b"\xfa\xfa"

#: b1, b2, ctrl and the two LEN bytes.
HEADER_LEN = 5

#: CRC16, high byte first.
CRC_LEN = 2

Buffer = bytes | bytearray
F = TypeVar("F")


@dataclass(frozen=True, kw_only=True, eq=False)
class FaFraming(Generic[F]):
    """One family's framing rules (module doc): build, and decode with recovery.

    ``make(b1, b2, ctrl, data)`` builds the family's frame object;
    ``read_length`` turns the two LEN bytes into a count (None: not a
    length), ``write_length`` a count into them; ``length_kind`` names the
    encoding in a bad-length report ("BCD").
    """

    make: Callable[[int, int, int, bytes], F]
    read_length: Callable[[bytes], int | None]
    write_length: Callable[[int], bytes]
    length_kind: str
    max_data_len: int
    escaped: bool

    @property
    def max_wire_frame(self) -> int:
        """Longest frame on the wire (escaped: every byte after the FA doubled)."""
        return 1 + (2 if self.escaped else 1) * (HEADER_LEN + self.max_data_len + CRC_LEN)

    # ------------------------------------------------------------ building

    def encode(self, b1: int, b2: int, ctrl: int, data: bytes) -> bytes:
        """The frame as sent on the wire: header, data, CRC (escaped: inner FAs doubled)."""
        body = bytes((b1, b2, ctrl)) + self.write_length(len(data)) + data
        raw = body + crc16_arc(body).to_bytes(CRC_LEN, "big")
        if self.escaped:
            raw = raw.replace(_SYNC_BYTES, _ESCAPED_SYNC)
        return _SYNC_BYTES + raw

    # ------------------------------------------------------------ decoding

    def decode_at(self, buf: Buffer, start: int) -> tuple[F | ProtocolError | None, int]:
        """Decode the first thing in ``buf[start:]`` without copying it.

        Returns ``(frame, n)``, ``(ProtocolError, n)`` (bytes to drop, see
        the module doc for every case) or ``(None, 0)`` when more bytes are
        needed.
        """
        if start >= len(buf):
            return None, 0
        if self.find_sync(buf, start) != start:
            nxt = self.next_start(buf, start)
            skip = nxt - start if nxt >= 0 else self.skippable(buf, start)
            if skip == 0:
                return None, 0
            return ProtocolError("garbage", f"{skip} bytes skipped"), skip
        result, consumed = self.parse_at(buf, start)
        if isinstance(result, ProtocolError):
            consumed = self.hunt(buf, start)
        return result, consumed

    def find_sync(self, buf: Buffer, pos: int) -> int:
        """Index of the first possible frame start at or after ``pos``, or -1.

        Escaped: a lone FA (its next byte known and not FA). Unescaped: any FA.
        """
        if not self.escaped:
            return buf.find(_SYNC_BYTES, pos)
        end = len(buf) - 1  # the FA needs a successor to be known lone
        i = buf.find(_SYNC_BYTES, pos)
        while 0 <= i < end:
            if buf[i + 1] != SYNC:
                return i
            i = buf.find(_SYNC_BYTES, i + 1)
        return -1

    def skippable(self, buf: Buffer, start: int) -> int:
        """Bytes from ``start`` with no frame start in them (escaped: keeping a
        final FA, whose successor decides)."""
        end = len(buf)
        if self.escaped and end > start and buf[end - 1] == SYNC:
            return end - start - 1
        return end - start

    def parse_at(self, buf: Buffer, start: int) -> tuple[F | ProtocolError | None, int]:
        """Parse the frame whose start is at ``start``.

        Returns ``(frame, n)``, ``(None, 0)`` when more bytes are needed, or
        ``(ProtocolError, 0)``: the caller then hunts (:meth:`hunt`).
        """
        fast = self._parse_unescaped(buf, start)
        return self.parse_escaped(buf, start) if fast is None else fast

    def parse_escaped(self, buf: Buffer, start: int) -> tuple[F | ProtocolError | None, int]:
        """:meth:`parse_at` byte by byte, undoing escapes (any escaped frame)."""
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
                length = self._length(bytes(body[3:HEADER_LEN]))
                if isinstance(length, ProtocolError):
                    return length, 0
                need = HEADER_LEN + length + CRC_LEN
        return self._checked(bytes(body), i - start)

    def _parse_unescaped(
        self, buf: Buffer, start: int
    ) -> tuple[F | ProtocolError | None, int] | None:
        """:meth:`parse_at` by slicing. Escaped framing: None when an FA is in
        the way (the byte loop then); unescaped framing: always."""
        first, n = start + 1, len(buf)
        escaped = self.escaped
        if escaped and buf.find(_SYNC_BYTES, first, first + HEADER_LEN) >= 0:
            return None
        if n < first + HEADER_LEN:
            return None, 0
        length = self._length(bytes(buf[first + 3 : first + HEADER_LEN]))
        if isinstance(length, ProtocolError):
            return length, 0
        end = first + HEADER_LEN + length + CRC_LEN
        if escaped and buf.find(_SYNC_BYTES, first, min(end, n)) >= 0:
            return None
        if end > n:
            return None, 0
        return self._checked(bytes(buf[first:end]), end - start)

    def _length(self, raw: bytes) -> int | ProtocolError:
        length = self.read_length(raw)
        if length is None or not 1 <= length <= self.max_data_len:
            kind, top = self.length_kind, self.max_data_len
            detail = f"LEN {raw.hex(' ').upper()} is not {kind} 1..{top}"
            return ProtocolError("bad_length", detail)
        return length

    def _checked(self, body: bytes, consumed: int) -> tuple[F | ProtocolError, int]:
        """Header + data + CRC, unescaped: the frame, or a bad-CRC error."""
        payload = body[:-CRC_LEN]
        got, want = int.from_bytes(body[-CRC_LEN:], "big"), crc16_arc(payload)
        if got != want:
            return ProtocolError("bad_crc", f"CRC {got:04X}, computed {want:04X}"), 0
        return self.make(payload[0], payload[1], payload[2], payload[HEADER_LEN:]), consumed

    def next_start(self, buf: Buffer, pos: int) -> int:
        """The first frame start at or after ``pos`` that begins a plausible
        frame (a good one, one still incomplete, or one with a bad CRC), or -1."""
        i = self.find_sync(buf, pos)
        while i >= 0:
            result, _ = self.parse_at(buf, i)
            if not isinstance(result, ProtocolError) or result.kind == "bad_crc":
                return i
            i = self.find_sync(buf, i + 1)
        return -1

    def hunt(self, buf: Buffer, start: int) -> int:
        """Bytes to consume after a bad frame at ``start``: up to the next frame start."""
        nxt = self.next_start(buf, start + 1)
        consumed = nxt - start if nxt >= 0 else self.skippable(buf, start)
        return max(consumed, 1)


class FaFrameDecoder(BufferedDecoder[F | ProtocolError]):
    """Buffers partial frames across reads; see the module doc for recovery.

    A family subclasses it with its ``MAX_BUFFER`` (twice its longest wire
    frame: after each drain the buffer holds at most one incomplete frame,
    and the same again of new input per step keeps progress with memory
    per line fixed) and its :class:`FaFraming`.
    """

    ERROR_KINDS = ("bad_crc", "bad_length", "truncated")
    ERROR_TYPE = ProtocolError

    def __init__(self, framing: FaFraming[F]) -> None:
        super().__init__()
        self._framing = framing

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[F | ProtocolError | None, int]:
        return self._framing.decode_at(buf, pos)

    def _next_start(self, buf: bytearray, pos: int) -> int:
        return self._framing.next_start(buf, pos)
